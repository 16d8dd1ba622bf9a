"""Allowed precision sets, strict mode and per-layer overrides (workbench.builder.precision_policy),
checked on hand-computed numerics, onnxruntime and the builder's own timing records."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import ort_run, rel_l2, tiny_cnn
from workbench.builder.build import build_network
from workbench.errors import BuildError
from workbench.runtime.engine import Engine

F16, BF16 = np.float16, ml_dtypes.bfloat16


def mlp_with_softmax() -> onnx.ModelProto:
    """x[4,8] -> MatMul W1 -> Relu -> MatMul W2 -> Softmax; values with few significant bits, so
    every float32 accumulation below is exact and only the roundings asked for happen."""
    rng = np.random.default_rng(0)
    w1 = (rng.integers(-32, 33, (8, 16)) / 32).astype(np.float32)
    w2 = (rng.integers(-8, 9, (16, 6)) / 8).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["z"], name="mm2"),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
                              [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def engine(model, **config) -> Engine:
    return Engine(build_network(wb.load(model), wb.BuilderConfig(**config)))


def x_input() -> np.ndarray:
    return (np.random.default_rng(1).integers(-64, 65, (4, 8)) / 16).astype(np.float32)


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,message", [
    ({"precision": {"fp16", "int4"}}, r"names \['int4'\], which are not precisions"),
    ({"precision": []}, "precision set is empty"),
    ({"precision": 16}, "must be a name or a set of names"),
    ({"layer_precisions": {"conv1": "fp8"}}, r"layer_precisions\['conv1'\] = 'fp8'"),
    ({"layer_precisions": {"re:(": "fp16"}}, r"selector 're:\(' is not a valid regex"),
    ({"layer_precisions": {"op:": "fp16"}}, "must be a layer name"),
    ({"sparsity": "maybe"}, "sparsity 'maybe' is not supported"),
])
def test_config_refuses_bad_precision_settings(kwargs, message):
    with pytest.raises(BuildError, match=message):
        wb.BuilderConfig(**kwargs)


def test_config_keeps_a_name_and_turns_any_iterable_into_a_set():
    assert wb.BuilderConfig(precision="fp16").precision == "fp16"
    assert wb.BuilderConfig(precision=["int8", "fp16", "int8"]).precision == frozenset({"fp16", "int8"})


# -- mixed precision numerics ---------------------------------------------------------------------
def test_per_layer_precisions_round_where_asked_with_explicit_reformat_layers():
    x = x_input()
    eng = engine(mlp_with_softmax(), layer_precisions={"mm1": "fp16", "mm2": "bf16"})
    layers = [(l.name, l.op, l.precision) for l in eng.layers]
    assert layers == [("x/reformat", "Cast", "fp16"), ("mm1", "MatMul", "fp16"), ("h/reformat", "Cast", "fp16"),
                      ("relu", "Relu", "fp32"), ("r/reformat", "Cast", "bf16"), ("mm2", "MatMul", "bf16"),
                      ("z/reformat", "Cast", "bf16"), ("softmax", "Softmax", "fp32")]
    assert eng.weights["W1"].dtype == F16 and eng.weights["W2"].dtype == BF16

    w1, w2 = (numpy_helper.to_array(t) for t in mlp_with_softmax().graph.initializer)
    h = (x.astype(np.float64) @ w1).astype(F16)                         # exact sum, one fp16 rounding
    r = np.maximum(h.astype(np.float32), 0)
    z = (r.astype(BF16).astype(np.float64) @ w2).astype(BF16).astype(np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    want = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    got = eng.create_context().run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    fp32 = ort_run(mlp_with_softmax(), {"x": x})["y"]
    assert rel_l2(got, fp32) > 1e-4                                      # the roundings did happen


def test_overrides_select_by_name_regex_and_op_the_most_specific_wins():
    eng = engine(mlp_with_softmax(), precision="fp16",
                 layer_precisions={"op:MatMul": "tf32", "re:^mm": "bf16", "mm2": "fp32"})
    by_name = {l.name: l.precision for l in eng.layers}
    assert (by_name["mm1"], by_name["mm2"], by_name["relu"]) == ("bf16", "fp32", "fp16")
    reasons = eng.precision_report().set_index("layer")["precision_reason"]
    assert reasons["mm1"] == "override 're:^mm'" and reasons["mm2"] == "override 'mm2'"
    assert reasons["relu"] == "precision='fp16'"
    assert "sums exp()" in reasons["softmax"] and by_name["softmax"] == "fp32"   # fp16 asked, kept fp32
    fused = engine(tiny_cnn(batch=2), layer_precisions={"conv": "fp16"})        # a source node's name
    assert {l.name: l.precision for l in fused.layers}["conv"] == "fp16"


def test_an_override_that_matches_nothing_is_named_with_the_layers():
    with pytest.raises(BuildError, match=r"selector 're:\^/layer4/' matches no layer; layers are 'mm1' \(MatMul\), "
                                         r"'relu' \(Relu\)"):
        engine(mlp_with_softmax(), layer_precisions={"mm1": "fp16", "re:^/layer4/": "fp16"})


def test_int8_override_on_a_layer_without_an_int8_path_is_refused():
    with pytest.raises(BuildError, match=r"layer_precisions\['relu'\] = 'int8', but layer 'relu' \(Relu\) has no "
                                         r"int8 path"):
        wb.build(mlp_with_softmax(), wb.BuilderConfig(layer_precisions={"relu": "int8"},
                                                      calibration_data=[{"x": x_input()}]))


# -- allowed sets ---------------------------------------------------------------------------------
def test_strict_set_gives_each_layer_the_lowest_allowed_precision_it_supports():
    eng = engine(mlp_with_softmax(), precision={"tf32", "bf16", "fp16"}, strict=True)
    report = eng.precision_report().set_index("layer")
    chosen = report.loc[["mm1", "relu", "mm2", "softmax"], "precision"].tolist()
    assert chosen == ["fp16", "fp16", "fp16", "fp32"]
    assert report.loc["mm1", "precision_reason"] == "strict: lowest allowed it supports"
    assert "sums exp()" in report.loc["softmax", "precision_reason"]
    assert eng.precision == "fp32+tf32+fp16+bf16"
    assert eng.meta["precision"]["allowed"] == ["fp16", "bf16", "tf32", "fp32"]


def test_allowed_set_keeps_the_fastest_measured_precision_per_layer():
    model = tiny_cnn(batch=4)
    eng = engine(model, precision={"fp16", "tf32"}, builder_level=1)
    decided = eng.meta["precision"]["layers"]
    timed = {name: d for name, d in decided.items() if d["times_ms"]}
    assert {"conv", "fc"} <= set(timed)                        # the matmul layers had three candidates
    assert set(timed["conv"]["times_ms"]) == {"fp32", "tf32", "fp16"}
    for name, d in timed.items():
        fastest = min(d["times_ms"], key=d["times_ms"].get)
        assert d["reason"].startswith(f"fastest of {fastest} ")
        assert {l.name: l.precision for l in eng.layers}[name] == fastest
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8)).astype(np.float32)
    got = eng.create_context().run({"input": x})["logits"]
    assert rel_l2(got, ort_run(model, {"input": x})["logits"]) < 2e-3   # fp16 at worst


def test_int8_in_a_set_needs_q_dq_or_calibration():
    with pytest.raises(BuildError, match="int8 .*needs a graph with QuantizeLinear/DequantizeLinear"):
        engine(mlp_with_softmax(), precision={"fp16", "int8"})
    from workbench.quant.errors import CalibrationError
    with pytest.raises(CalibrationError, match="needs calibration: pass BuilderConfig\\(calibration_data"):
        wb.build(mlp_with_softmax(), wb.BuilderConfig(precision={"fp16", "int8"}))
