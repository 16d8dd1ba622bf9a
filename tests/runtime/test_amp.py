"""Automatic mixed precision, `wb.build(..., accuracy_budget=, eval_fn=)`, on the digits model's test
split with a deliberately harsh int8 calibration (the 90th percentile of |x| clips activations), so
the budget cannot hold without keeping layers at a higher precision."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import digits_study
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import ort_run, rel_l2
from workbench.errors import BuildError
from workbench.quant.calibrate import make_calibrator

HARSH = make_calibrator("percentile", percentile=90)


@pytest.fixture(scope="module")
def digits():
    graph, top1, calibration = digits_study()
    fp32 = top1(wb.build(graph, wb.BuilderConfig(batch_size=40, builder_level=0)))
    return graph, top1, calibration, fp32


def harsh(data, **kw) -> wb.BuilderConfig:
    return wb.BuilderConfig(batch_size=40, calibration_data=data, calibrator=HARSH, builder_level=0, **kw)


def test_amp_keeps_the_most_sensitive_layers_until_the_budget_holds(digits, tmp_path):
    graph, top1, data, fp32 = digits
    engine = wb.build(graph, harsh(data, precision="int8"), accuracy_budget=0.5, eval_fn=top1)
    final = top1(engine)                                    # measured again, independently of the report
    assert fp32 - final <= 0.5
    amp = engine.meta["amp"]
    assert amp["met"] and amp["final_metric"] == pytest.approx(final) and amp["reference"] == pytest.approx(fp32)
    assert fp32 - amp["start_metric"] > 0.5                 # the harsh all-int8 engine missed the budget
    report = engine.amp_report()
    assert len(report) >= 1 and set(report["kept_at"]) == {"fp32"}       # a precision name: fallback is fp32
    ranked = [row["layer"] for row in amp["sensitivity"]]
    assert report["layer"].tolist() == ranked[:len(report)]            # most sensitive first
    assert report["sensitivity_delta"].is_monotonic_increasing
    assert report["metric_after"].iloc[-1] == pytest.approx(final)
    kept = {l.name: l.precision for l in engine.layers}
    assert all(kept[name] == "fp32" for name in report["layer"])
    assert "int8" in kept.values()                                     # the rest stays int8
    engine.save(tmp_path / "amp.wbplan")
    again = wb.Engine.load(tmp_path / "amp.wbplan")
    assert again.amp_report().equals(report) and top1(again) == pytest.approx(final)


def two_layer_mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W1"),
             numpy_helper.from_array(rng.standard_normal((16, 6)).astype(np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_amp_with_an_allowed_set_falls_back_to_the_next_allowed_precision():
    # metric: minus the relative L2 error (in percent) against onnxruntime's FP32 outputs
    model = two_layer_mlp()
    x = np.random.default_rng(3).standard_normal((64, 8)).astype(np.float32)
    reference = ort_run(model, {"x": x})["y"]

    def error(engine) -> float:
        return -100 * rel_l2(engine.create_context().run({"x": x})["y"], reference)
    config = wb.BuilderConfig(batch_size=64, precision={"fp16", "int8"}, strict=True, builder_level=0,
                              calibration_data=[{"x": x[:16]}], calibrator="minmax")
    assert error(wb.build(model, config)) < -0.5                     # all-int8 misses a 0.5 % budget
    engine = wb.build(model, config, accuracy_budget=0.5, eval_fn=error)
    report = engine.amp_report()
    assert len(report) >= 1 and report["kept_at"].iloc[0] == "fp16"
    assert {l.name: l.precision for l in engine.layers}[report["layer"].iloc[0]] == "fp16"
    assert error(engine) >= -0.5 and engine.meta["amp"]["met"]


def test_amp_keeps_nothing_when_the_low_precision_already_meets_the_budget(digits):
    graph, top1, _, fp32 = digits
    engine = wb.build(graph, wb.BuilderConfig(batch_size=40, precision="fp16", builder_level=0),
                      accuracy_budget=0.5, eval_fn=top1)
    amp = engine.meta["amp"]
    assert amp["kept"] == [] and amp["sensitivity"] == [] and amp["met"]
    assert engine.amp_report().empty and fp32 - top1(engine) <= 0.5


def test_amp_refuses_a_missing_eval_fn_and_a_negative_budget(digits):
    graph = digits[0]
    with pytest.raises(BuildError, match="accuracy_budget needs eval_fn="):
        wb.build(graph, wb.BuilderConfig(precision="fp16"), accuracy_budget=0.5)
    with pytest.raises(BuildError, match="accuracy_budget must be >= 0"):
        wb.build(graph, wb.BuilderConfig(precision="fp16"), accuracy_budget=-1, eval_fn=digits[1])
