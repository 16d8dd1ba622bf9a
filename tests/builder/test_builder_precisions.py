"""Every precision through the public builder API, on the bundled digits model's real test split."""
from __future__ import annotations

import logging

import pytest

import workbench as wb
from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
from workbench.evaluate.metrics import accuracy, predict
from workbench.quant.errors import CalibrationError


@pytest.fixture(scope="module")
def digits():
    optimized, _ = wb.optimize(wb.load(digits_model_path()))
    images, labels = digits_test()
    fp32 = accuracy(predict(wb.build(optimized, wb.BuilderConfig(profile=(1, 32, 64))), images, 32), labels)
    train, _ = digits_train(limit=500)
    return optimized, images, labels, fp32, [{"input": train[i:i + 50]} for i in range(0, 500, 50)]


@pytest.mark.parametrize("precision,budget", [("tf32", 0.002), ("fp16", 0.002), ("bf16", 0.005)])
def test_float_precisions_keep_accuracy(digits, precision, budget):
    graph, images, labels, fp32, _ = digits
    engine = wb.build(graph, wb.BuilderConfig(precision=precision, profile=(1, 32, 64)))
    assert fp32 - accuracy(predict(engine, images, 32), labels) <= budget
    assert {l.precision for l in engine.layers} >= {precision}
    assert engine.outputs[0].dtype.name == "float32"           # boundaries reformat back to fp32


def test_int8_entropy_within_half_a_point_and_cache_reused(digits, tmp_path, caplog):
    graph, images, labels, fp32, data = digits
    cache = tmp_path / "digits.calib.json"
    config = wb.BuilderConfig(precision="int8", profile=(1, 32, 64), calibration_data=data, calibration_cache=cache)
    int8 = accuracy(predict(wb.build(graph, config), images, 32), labels)
    assert fp32 - int8 <= 0.005 and cache.is_file()
    with caplog.at_level(logging.INFO, logger="workbench"):
        again = wb.build(graph, wb.BuilderConfig(precision="int8", profile=(1, 32, 64), calibration_cache=cache))
    assert "calibration cache hit" in caplog.text
    assert accuracy(predict(again, images, 32), labels) == int8


def test_int8_without_calibration_says_what_to_provide(digits):
    with pytest.raises(CalibrationError, match="precision='int8' needs calibration: pass BuilderConfig\\(calibration_data"):
        wb.build(digits[0], wb.BuilderConfig(precision="int8"))
