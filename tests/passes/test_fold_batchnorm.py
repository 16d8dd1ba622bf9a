"""fold_batchnorm: Conv/Gemm + BatchNormalization become one node with rescaled weights, the
originals stay traceable, shared weights stay untouched, and refusals say why."""
from __future__ import annotations

from functools import partial

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_idempotent, assert_same_outputs, x_model

import workbench as wb
from workbench.evaluate import zoo

PASS = "fold_batchnorm"
F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def _bn_params(prefix: str, channels: int) -> list[tuple[str, np.ndarray]]:
    return [(f"{prefix}.gamma", RNG.uniform(0.5, 1.5, channels).astype(np.float32)),
            (f"{prefix}.beta", RNG.normal(0, 0.1, channels).astype(np.float32)),
            (f"{prefix}.mean", RNG.normal(0, 0.1, channels).astype(np.float32)),
            (f"{prefix}.var", RNG.uniform(0.5, 1.5, channels).astype(np.float32))]


def _bn(x: str, y: str, name: str, prefix: str = "bn") -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}.{p}" for p in ("gamma", "beta", "mean", "var")],
                            [y], name=name, epsilon=1e-3)


def _graph(nodes, outputs, inits, x_shape=(2, 4, 5, 5), opsets=(("", 17),), ir_version=8) -> wb.Graph:
    return wb.load(x_model(nodes, outputs, inits, x_shape=x_shape, opsets=opsets, ir_version=ir_version))


_check_same_outputs = partial(assert_same_outputs, tol=1e-5, seed=1)


@pytest.mark.parametrize("bias, group", [(True, 1), (False, 1), (True, 4)])
def test_conv_bn_becomes_one_conv(bias, group):
    w = RNG.standard_normal((6 if group == 1 else 4, 4 // group, 3, 3)).astype(np.float32)
    channels = w.shape[0]
    inits = [("w", w)] + ([("b", RNG.standard_normal(channels).astype(np.float32))] if bias else [])
    inits += _bn_params("bn", channels)
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], name="conv",
                              pads=[1, 1, 1, 1], group=group),
             _bn("c", "y", "bn")]
    graph = _graph(nodes, ["y"], inits)
    optimized, report = wb.optimize(graph, only=[PASS])
    rows = report.to_dataframe()
    assert list(rows["new_node"]) == ["conv+bn"] and list(rows["new_op"]) == ["Conv"]
    assert list(rows["replaced_nodes"]) == [["conv", "bn"]]
    assert list(rows["replaced_ops"]) == [["Conv", "BatchNormalization"]]
    assert optimized.op_counts() == {"Conv": 1}
    conv = optimized.nodes[0]
    assert conv.name == "conv+bn" and conv.metadata_props["workbench.source_nodes"] == "conv,bn"
    assert conv.outputs[0].name == "y"
    assert sorted(optimized.initializers) == ["conv+bn.bias", "conv+bn.weight"]
    assert optimized.initializers["conv+bn.weight"].const_value.numpy().dtype == np.float32
    _check_same_outputs(graph, optimized)
    assert_idempotent(optimized, [PASS])


@pytest.mark.parametrize("trans_b, bias", [(0, True), (1, True), (1, False)])
def test_gemm_bn_becomes_one_gemm(trans_b, bias):
    w = RNG.standard_normal((3, 8) if trans_b else (8, 3)).astype(np.float32)
    inits = [("w", w)] + ([("c", RNG.standard_normal((1, 3)).astype(np.float32))] if bias else [])
    nodes = [helper.make_node("Gemm", ["x", "w"] + (["c"] if bias else []), ["g"], name="fc",
                              transB=trans_b, alpha=0.5, beta=2.0),
             _bn("g", "y", "bn")]
    graph = _graph(nodes, ["y"], inits + _bn_params("bn", 3), x_shape=(4, 8))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert list(report.to_dataframe()["new_node"]) == ["fc+bn"]
    assert optimized.op_counts() == {"Gemm": 1}
    _check_same_outputs(graph, optimized)
    assert_idempotent(optimized, [PASS])


def test_shared_weights_are_not_mutated():
    w = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"), _bn("c1", "y1", "bn1"),
             helper.make_node("Conv", ["x", "w"], ["y2"], name="conv2")]
    graph = _graph(nodes, ["y1", "y2"], [("w", w)] + _bn_params("bn", 4))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert len(report.to_dataframe()) == 1
    assert optimized.op_counts() == {"Conv": 2}
    np.testing.assert_array_equal(optimized.initializers["w"].const_value.numpy(), w)
    assert not any(name.startswith("bn.") for name in optimized.initializers)   # unread BN params dropped
    _check_same_outputs(graph, optimized)


def test_refusals_say_why():
    w = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"), _bn("c1", "y1", "bn1"),   # c1 read twice
             helper.make_node("Relu", ["x"], ["r"], name="relu"), _bn("r", "y2", "bn2"),           # not a conv
             helper.make_node("Conv", ["x", "x_w"], ["c3"], name="conv3"), _bn("c3", "y3", "bn3")]  # weights from input
    inits = [("w", w)] + _bn_params("bn", 4)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 4, 3, 3]),
                                           helper.make_tensor_value_info("x_w", F, [4, 4, 1, 1])],
                              [onnx.ValueInfoProto(name=o) for o in ("y1", "y2", "y3", "c1")],
                              [numpy_helper.from_array(v, k) for k, v in inits])
    graph = wb.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    reasons = report.misses_dataframe().set_index("node")["reason"]
    assert "graph output" in reasons["bn1"]
    assert "Relu" in reasons["bn2"]
    assert "weights are not a constant" in reasons["bn3"]


def test_fused_conv_without_activation_keeps_its_sources():
    w = RNG.standard_normal((4, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("FusedConv", ["x", "w", "b"], ["c"], name="conv+add", domain="workbench",
                              source_nodes=["conv", "add"], pads=[1, 1, 1, 1], activation=""),
             _bn("c", "y", "bn")]
    inits = [("w", w), ("b", RNG.standard_normal(4).astype(np.float32))] + _bn_params("bn", 4)
    graph = _graph(nodes, ["y"], inits, opsets=(("", 17), ("workbench", 1)))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert list(report.to_dataframe()["replaced_nodes"]) == [["conv", "add", "bn"]]
    assert optimized.op_counts() == {"workbench::FusedConv": 1}
    assert list(optimized.nodes[0].attributes["source_nodes"].value) == ["conv", "add", "bn"]
    _check_same_outputs(graph, optimized)


def test_old_ir_models_list_the_new_initializers_as_inputs():
    w = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), _bn("c", "y", "bn")]
    graph = _graph(nodes, ["y"], [("w", w)] + _bn_params("bn", 4), opsets=(("", 9),), ir_version=3)
    optimized, _ = wb.optimize(graph, only=[PASS])
    assert [v.name for v in optimized.ir_graph.inputs] == ["x", "conv+bn.weight", "conv+bn.bias"]
    assert [s.name for s in optimized.inputs] == ["x"]
    _check_same_outputs(graph, optimized)


def test_resnet18_has_no_batchnorm_left():
    graph = wb.load(zoo.resnet18(seed=0, batch=1, image_size=64))
    optimized, report = wb.optimize(graph, only=[PASS])
    before, after = graph.op_counts(), optimized.op_counts()
    assert before["BatchNormalization"] == 20 and "BatchNormalization" not in after
    assert after["Conv"] == before["Conv"] == 20
    rows = report.to_dataframe()
    assert len(rows) == 20 and all(ops == ["Conv", "BatchNormalization"] for ops in rows["replaced_ops"])
    assert not any(".bn" in name or name.startswith("bn") for name in optimized.initializers)
    _check_same_outputs(graph, optimized)
    assert_idempotent(optimized, [PASS])
