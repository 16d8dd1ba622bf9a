"""Sensitivity analysis (one layer at a time in low precision) on the digits model's test split."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import digits_study
from matplotlib.figure import Figure

import workbench as wb
from conftest import ort_run, rel_l2, tiny_cnn
from workbench.errors import BuildError
from workbench.evaluate.sensitivity import COLUMNS, sensitivity
from workbench.quant.calibrate import make_calibrator
from workbench.viz.sensitivity_plots import plot_sensitivity

CONFIG = dict(batch_size=40, builder_level=0)


@pytest.fixture(scope="module")
def digits():
    return digits_study()


def test_int8_sensitivity_ranks_layers_by_their_own_accuracy_cost(digits):
    graph, top1, data = digits
    config = wb.BuilderConfig(calibrator=make_calibrator("percentile", percentile=90), **CONFIG)
    df = sensitivity(graph, top1, "int8", calibration_data=data, config=config,
                     layers=["conv1+relu1", "conv2+relu2", "fc2"])
    assert list(df.columns) == COLUMNS
    assert set(df["layer"]) == {"conv1+relu1", "conv2+relu2", "fc2"}
    assert df["delta"].is_monotonic_increasing and df["delta"].iloc[0] < 0
    fp32 = top1(wb.build(graph, wb.BuilderConfig(**CONFIG)))
    assert df.attrs["reference"] == pytest.approx(fp32)
    assert (df["delta"] == df["metric"] - fp32).all()
    worst = df.iloc[0]                                     # rebuilt by hand: only that layer in int8
    alone = wb.build(graph, wb.BuilderConfig(layer_precisions={worst.layer: "int8"}, calibration_data=data,
                                             calibrator=config.calibrator, **CONFIG))
    assert top1(alone) == pytest.approx(worst.metric)
    fig = plot_sensitivity(df, kept=[worst.layer])
    assert isinstance(fig, Figure) and len(fig.axes[0].patches) == len(df)


def test_fp16_sensitivity_covers_every_layer_that_can_run_in_fp16():
    # metric: minus the relative L2 error (in percent) against onnxruntime's FP32 outputs
    model = tiny_cnn(batch=8)
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    reference = ort_run(model, {"input": x})["logits"]

    def error(engine) -> float:
        return -100 * rel_l2(engine.create_context().run({"input": x})["logits"], reference)
    df = sensitivity(model, error, "fp16", config=wb.BuilderConfig(builder_level=0))
    assert sorted(df["layer"]) == ["conv", "fc", "flatten", "pool", "relu"]
    assert df.attrs["reference"] > -1e-4                     # the FP32 engine matches onnxruntime
    assert ((df["delta"] < 0) & (df["delta"] > -0.5)).all()  # each fp16 layer adds a small error


def test_sensitivity_names_unknown_and_unsupported_layers(digits):
    graph, top1, data = digits
    with pytest.raises(BuildError, match=r"no layer named \['conv9'\]"):
        sensitivity(graph, top1, "fp16", layers=["conv9"], config=wb.BuilderConfig(**CONFIG))
    with pytest.raises(BuildError, match=r"cannot run in int8: \{'pool': 'has no int8 path"):
        sensitivity(graph, top1, "int8", layers=["pool"], calibration_data=data, config=wb.BuilderConfig(**CONFIG))
