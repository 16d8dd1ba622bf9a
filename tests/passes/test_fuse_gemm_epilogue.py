"""fuse_gemm_epilogue: Gemm / MatMul + bias + residual + activation -> workbench::FusedGemm."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from pass_checks import assert_sound_rewrite, float_io_model

import workbench as wb
from workbench.backends.cpu.registry import lookup
from workbench.evaluate import zoo

PASS = "fuse_gemm_epilogue"
RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)) -> onnx.ModelProto:
    return float_io_model(nodes, inputs, outputs, [(n, a.astype(np.float32)) for n, a in inits], opsets=opsets)


def _optimize_and_compare(model, feeds, batch=2, only=(PASS,)):
    graph = wb.load(model)
    optimized, report = wb.optimize(graph, only=list(only))
    assert_sound_rewrite(graph, optimized, only, feeds, config=wb.BuilderConfig(batch_size=batch), tol=1e-5)
    return optimized, report


def _fused(graph):
    return [n for n in graph.nodes if n.op_type == "FusedGemm"]


def _attrs(node):
    return {k: a.value for k, a in node.attributes.items()}


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_matmul_bias_residual_silu_on_3d_input():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Add", ["b", "m"], ["a"], name="bias"),
             helper.make_node("Add", ["a", "r"], ["s"], name="res"),
             helper.make_node("Sigmoid", ["s"], ["sg"], name="sig"),
             helper.make_node("Mul", ["s", "sg"], ["y"], name="silu")]
    model = _model(nodes, [("x", ["N", 4, 8]), ("r", ["N", 4, 6])], [("y", ["N", 4, 6])],
                   [("W", _x(8, 6)), ("b", _x(6))])
    optimized, report = _optimize_and_compare(model, {"x": _x(2, 4, 8), "r": _x(2, 4, 6)})
    assert optimized.op_counts() == {"workbench::FusedGemm": 1}
    row = report.to_dataframe().iloc[0]
    assert row["pass"] == PASS and row["new_op"] == "workbench::FusedGemm"
    assert row["replaced_nodes"] == ["mm", "bias", "res", "sig", "silu"]
    assert row["replaced_ops"] == ["MatMul", "Add", "Add", "Sigmoid", "Mul"]
    node, = _fused(optimized)
    assert [v.name for v in node.inputs] == ["x", "W", "b", "r"]
    assert _attrs(node)["activation"] == "SiLU" and _attrs(node)["epilogue_bias"] == 1
    assert optimized.outputs[0].shape == ("N", 4, 6)


@pytest.mark.parametrize("act, extra, params", [
    ("Relu", {}, None), ("LeakyRelu", {"alpha": 0.2}, [0.2]), ("Sigmoid", {}, None), ("Tanh", {}, None),
    ("HardSwish", {}, None), ("Clip", {}, [0.0, 6.0])])
def test_gemm_with_c_and_activation(act, extra, params):
    inputs = ["g", "lo", "hi"] if act == "Clip" else ["g"]
    nodes = [helper.make_node("Gemm", ["x", "W", "c"], ["g"], name="fc", transB=1, alpha=0.5, beta=2.0),
             helper.make_node(act, inputs, ["y"], name="act", **extra)]
    inits = [("W", _x(6, 8)), ("c", _x(6)), ("lo", np.array(0.0)), ("hi", np.array(6.0))]
    optimized, report = _optimize_and_compare(_model(nodes, [("x", ["N", 8])], [("y", ["N", 6])], inits),
                                              {"x": 3 * _x(2, 8)})
    node, = _fused(optimized)
    attrs = _attrs(node)
    assert attrs["activation"] == act and attrs["transB"] == 1 and attrs["alpha"] == 0.5 and attrs["beta"] == 2.0
    assert "epilogue_bias" not in attrs
    assert (list(attrs["activation_params"]) if params else None) == (pytest.approx(params) if params else None)
    assert report.to_dataframe()["replaced_ops"].tolist() == [["Gemm", act]]


def test_gemm_without_c_takes_the_bias_add():
    nodes = [helper.make_node("Gemm", ["x", "W"], ["g"], name="fc", transA=1),
             helper.make_node("Add", ["g", "b"], ["y"], name="bias")]
    model = _model(nodes, [("x", [8, 3])], [("y", [3, 5])], [("W", _x(8, 5)), ("b", _x(1, 5))])
    optimized, _ = _optimize_and_compare(model, {"x": _x(8, 3)}, batch=None)
    node, = _fused(optimized)
    assert _attrs(node)["epilogue_bias"] == 1 and _attrs(node)["transA"] == 1


def test_gelu_from_fuse_gelu():
    if lookup("workbench", "FusedGelu") is None:
        pytest.skip("workbench::FusedGelu has no CPU kernel yet")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
             helper.make_node("FusedGelu", ["a"], ["y"], name="gelu", domain="workbench", approximate="tanh")]
    model = _model(nodes, [("x", ["N", 8])], [("y", ["N", 6])], [("W", _x(8, 6)), ("b", _x(6))],
                   opsets=(("", 17), ("workbench", 1)))
    optimized, _ = _optimize_and_compare(model, {"x": _x(2, 8)})
    node, = _fused(optimized)
    assert _attrs(node)["activation"] == "Gelu" and list(_attrs(node)["activation_params"]) == [1.0]


@pytest.mark.parametrize("case", ["gemm_with_c", "matmul_alone", "bias_not_per_column"])
def test_nothing_to_fuse(case):
    if case == "gemm_with_c":
        nodes = [helper.make_node("Gemm", ["x", "W", "c"], ["y"], name="fc")]
        inits = [("W", _x(8, 6)), ("c", _x(6))]
    elif case == "matmul_alone":
        nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
        inits = [("W", _x(8, 6))]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
                 helper.make_node("Add", ["m", "b"], ["y"], name="add")]
        inits = [("W", _x(8, 6)), ("b", _x(2, 6))]
    graph = wb.load(_model(nodes, [("x", [2, 8])], [("y", [2, 6])], inits))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty and optimized.op_counts() == graph.op_counts()


def test_partial_matches_are_left_intact():
    # mm's output is read twice: nothing fuses. a's output is read twice: MatMul+Add fuse, Relu stays.
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
             helper.make_node("Relu", ["m"], ["y1"], name="other"),
             helper.make_node("MatMul", ["x", "W"], ["m2"], name="mm2"),
             helper.make_node("Add", ["m2", "b"], ["a2"], name="bias2"),
             helper.make_node("Relu", ["a2"], ["y2"], name="relu2")]
    model = _model(nodes, [("x", ["N", 8])], [("a", ["N", 6]), ("y1", ["N", 6]), ("a2", ["N", 6]), ("y2", ["N", 6])],
                   [("W", _x(8, 6)), ("b", _x(6))])
    optimized, report = _optimize_and_compare(model, {"x": _x(2, 8)})
    assert optimized.op_counts() == {"MatMul": 1, "Add": 1, "Relu": 2, "workbench::FusedGemm": 1}
    assert report.to_dataframe()["replaced_nodes"].tolist() == [["mm2", "bias2"]]


def test_why_not_dynamic_weight_and_broadcast_residual():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["y"], name="relu"),
             helper.make_node("Gemm", ["x", "W", "c"], ["g"], name="fc"),
             helper.make_node("Add", ["g", "z"], ["y2"], name="res")]
    model = _model(nodes, [("x", [2, 8]), ("w", [8, 6]), ("z", [1, 6])], [("y", [2, 6]), ("y2", [2, 6])],
                   [("W", _x(8, 6)), ("c", _x(6))])
    optimized, report = wb.optimize(wb.load(model), only=[PASS])
    assert report.to_dataframe().empty and "workbench::FusedGemm" not in optimized.op_counts()
    reasons = dict(zip(report.misses_dataframe()["node"], report.misses_dataframe()["reason"]))
    assert "not a constant 2-D matrix" in reasons["mm"] and "differs from the product's shape" in reasons["fc"]


def test_mlp_both_spellings():
    optimized, report = _optimize_and_compare(zoo.mlp(seed=0), {"input": _x(4, 64)}, batch=4)
    assert optimized.op_counts() == {"workbench::FusedGemm": 2, "Gemm": 1}
    assert report.to_dataframe()["replaced_ops"].tolist() == [["Gemm", "Relu"], ["MatMul", "Add", "Relu"]]


def test_bert_dense_layers():
    feeds = {"input_ids": RNG.integers(0, 100, (2, 16)).astype(np.int64),
             "attention_mask": np.ones((2, 16), np.int64)}
    optimized, report = _optimize_and_compare(zoo.bert(seed=0), feeds)
    rows = report.to_dataframe()
    assert len(rows) == 13 and optimized.op_counts()["workbench::FusedGemm"] == 13
    assert sum(ops == ["MatMul", "Add", "Add"] for ops in rows["replaced_ops"]) == 4   # dense + bias + residual
    assert rows["replaced_ops"].iloc[-1] == ["Gemm", "Tanh"]
