"""fuse_layernorm: the decomposed LayerNorm exporters write becomes one workbench::FusedLayerNorm,
numbers unchanged; the standard LayerNormalization op and near-misses are left alone."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_idempotent, assert_same_outputs

import workbench as wb
from workbench.evaluate import zoo

SHAPE = [2, 5, 16]


def ln_model(square="pow", divide=True, gamma=(16,), beta=(16,), opset=17, axes=(-1,), exponent=2.0,
             extra=()) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    consts = {"eps": np.array(1e-5, np.float32)}
    axes_attr = {"axes": list(axes)} if opset < 18 else {}
    axes_in = ["axes"] if opset >= 18 else []
    if opset >= 18:
        consts["axes"] = np.array(axes, np.int64)
    nodes = [("mean", "ReduceMean", ["x"] + axes_in, ["m"], axes_attr), ("center", "Sub", ["x", "m"], ["d"], {})]
    if square == "pow":
        consts["two"] = np.array(exponent, np.float32)
        nodes.append(("square", "Pow", ["d", "two"], ["d2"], {}))
    else:
        nodes.append(("square", "Mul", ["d", "d"], ["d2"], {}))
    nodes += [("var", "ReduceMean", ["d2"] + axes_in, ["v"], axes_attr), ("add_eps", "Add", ["v", "eps"], ["ve"], {}),
              ("sqrt", "Sqrt", ["ve"], ["sd"], {})]
    if divide:
        nodes.append(("normalize", "Div", ["d", "sd"], ["n"], {}))
    else:
        nodes += [("inverse", "Reciprocal", ["sd"], ["r"], {}), ("normalize", "Mul", ["r", "d"], ["n"], {})]
    last = "n"
    if gamma is not None:
        consts["gamma"] = rng.uniform(0.5, 1.5, gamma).astype(np.float32)
        nodes.append(("scale", "Mul", [last, "gamma"], ["g"], {}))
        last = "g"
    if beta is not None:
        consts["beta"] = rng.uniform(-0.5, 0.5, beta).astype(np.float32)
        nodes.append(("shift", "Add", ["beta", last], ["b"], {}))
        last = "b"
    nodes += [("out", "Identity", [last], ["y"], {})] + list(extra)
    outputs = ["y"] + [n[3][0] for n in extra]
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, name=name, **attrs) for name, op, ins, outs, attrs in nodes], "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, SHAPE) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _numerics(graph, optimized):
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32) * 2 + 0.5
    assert_same_outputs(graph, optimized, {"x": x}, tol=1e-5)


@pytest.mark.parametrize("kwargs,axis,inputs", [
    ({}, -1, 3),
    ({"square": "mul", "divide": False}, -1, 3),
    ({"gamma": None, "beta": None}, -1, 1),
    ({"beta": None}, -1, 2),
    ({"gamma": None}, -1, 3),                          # Scale left empty, B given
    ({"opset": 18}, -1, 3),                            # axes as an input
    ({"axes": (-2, -1), "gamma": (5, 16), "beta": (16,)}, -2, 3),
    ({"axes": (2,), "gamma": (1, 1, 16), "beta": ()}, -1, 3),   # leading 1s squeezed, scalar beta kept
])
def test_decomposed_layernorm_fuses(kwargs, axis, inputs):
    graph = wb.load(ln_model(**kwargs))
    optimized, report = wb.optimize(graph, only=["fuse_layernorm"])
    rows = report.to_dataframe()
    assert rows["new_op"].tolist() == ["workbench::FusedLayerNorm"]
    assert rows["replaced_nodes"][0][:2] == ["mean", "center"]
    assert optimized.op_counts() == {"workbench::FusedLayerNorm": 1, "Identity": 1}
    node = next(n for n in optimized.nodes if n.op_type == "FusedLayerNorm")
    attrs = wb.ir.node_attributes(node)
    assert attrs["axis"] == axis and attrs["epsilon"] == pytest.approx(1e-5)
    assert len(node.inputs) == inputs
    if kwargs.get("gamma") == (1, 1, 16):
        assert list(node.inputs[1].shape) == [16]
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    assert optimized.outputs[0].shape == tuple(SHAPE)
    _numerics(graph, optimized)
    assert_idempotent(optimized, ["fuse_layernorm"])


@pytest.mark.parametrize("kwargs,reason", [
    ({"axes": (1,)}, "ReduceMean over axes [1], not the trailing axes of a rank-3 input"),
    ({"exponent": 3.0}, "the square is Pow(d, 3.0), not Pow(d, 2)"),
    ({"extra": [("peek", "Neg", ["d"], ["side"], {})]}, "'d' is also read by ['peek']"),
])
def test_near_miss_is_left_intact(kwargs, reason):
    graph = wb.load(ln_model(**kwargs))
    optimized, report = wb.optimize(graph, only=["fuse_layernorm"])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    misses = report.misses_dataframe()
    assert misses["node"].tolist() == ["mean"] and reason in misses["reason"][0]


def test_standard_layernormalization_is_left_alone():
    """BERT writes LayerNorm as the opset-17 op: already one node, nothing to fuse."""
    graph = wb.load(zoo.bert(seed=0))
    optimized, report = wb.optimize(graph, only=["fuse_layernorm"])
    assert report.to_dataframe().empty and report.misses_dataframe().empty
    assert optimized.op_counts().get("workbench::FusedLayerNorm", 0) == 0
    assert optimized.op_counts()["LayerNormalization"] == 5
    assert optimized.op_counts() == graph.op_counts()


def test_normalized_value_with_several_readers_fuses_without_affine():
    """Y read by two nodes (one a Mul by a graph input, no constant): the LayerNorm fuses, gamma
    and beta are absent, and both readers read the fused output."""
    model = ln_model(gamma=None, beta=None, extra=[("gate", "Mul", ["n", "x"], ["gated"], {})])
    graph = wb.load(model)
    optimized, report = wb.optimize(graph, only=["fuse_layernorm"])
    assert optimized.op_counts() == {"workbench::FusedLayerNorm": 1, "Identity": 1, "Mul": 1}
    assert len(next(n for n in optimized.nodes if n.op_type == "FusedLayerNorm").inputs) == 1
    _numerics(graph, optimized)
