"""fuse_attention: MatMul -> scale -> (+mask) -> Softmax -> MatMul becomes one workbench::FusedAttention,
numbers unchanged; BERT gets one per layer; partial matches stay, with the reason."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_idempotent, assert_same_outputs

import workbench as wb
from workbench.evaluate import zoo

B, H, S, D, DV = 2, 2, 6, 4, 5


def attention_model(transpose_k=True, scale="div", mask="right", axis=-1, scale_value=None,
                    mask_shape=(B, 1, 1, S), q_shape=(B, H, S, D), probs_out=False) -> onnx.ModelProto:
    inputs = {"q": list(q_shape), "v": [B, H, S, DV]}
    nodes, consts = [], {}
    if transpose_k:
        inputs["k"] = [B, H, S, D]
        nodes.append(("k_t", "Transpose", ["k"], ["kt"], {"perm": [0, 1, 3, 2]}))
    else:
        inputs["kt"] = [B, H, D, S]                        # already [.., D, S]
    q = "q"
    if scale == "q":
        consts["c"] = np.array(0.5, np.float32)
        nodes.append(("q_scale", "Mul", ["q", "c"], ["qs"], {}))
        q = "qs"
    nodes.append(("scores", "MatMul", [q, "kt"], ["s0"], {}))
    s = "s0"
    if scale in ("div", "mul"):
        consts["c"] = np.asarray(scale_value if scale_value is not None else 2.0 if scale == "div" else 0.5,
                                 np.float32)
        nodes.append(("scale", "Div", ["s0", "c"], ["s1"], {}) if scale == "div"
                     else ("scale", "Mul", ["c", "s0"], ["s1"], {}))
        s = "s1"
    if mask:
        inputs["mask"] = list(mask_shape)
        nodes.append(("mask_add", "Add", [s, "mask"] if mask == "right" else ["mask", s], ["s2"], {}))
        s = "s2"
    nodes += [("softmax", "Softmax", [s], ["p"], {"axis": axis}), ("context", "MatMul", ["p", "v"], ["y"], {})]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if probs_out:
        outputs.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, name=name, **attrs) for name, op, ins, outs, attrs in nodes], "attention",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()], outputs,
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _feeds(graph):
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in graph.inputs}
    if "mask" in feeds:
        feeds["mask"] = np.where(feeds["mask"] > 0.5, -10000.0, 0.0).astype(np.float32)
    return feeds


def _numerics(graph, optimized, feeds=None, config=None):
    assert_same_outputs(graph, optimized, feeds or _feeds(graph), config=config, tol=1e-5)


@pytest.mark.parametrize("kwargs,scale,k_transposed,n_inputs", [
    ({}, 0.5, 0, 4),
    ({"transpose_k": False}, 0.5, 1, 4),
    ({"scale": "mul", "mask": "left"}, 0.5, 0, 4),
    ({"scale": "q", "mask": None}, 0.5, 0, 3),
    ({"scale": None, "axis": 3, "transpose_k": False}, 1.0, 1, 4),
    ({"scale_value": np.sqrt(D)}, 1 / np.sqrt(D), 0, 4),
])
def test_attention_fuses(kwargs, scale, k_transposed, n_inputs):
    graph = wb.load(attention_model(**kwargs))
    optimized, report = wb.optimize(graph, only=["fuse_attention"])
    rows = report.to_dataframe()
    assert rows["new_op"].tolist() == ["workbench::FusedAttention"]
    assert "softmax" in rows["replaced_nodes"][0] and "context" in rows["replaced_nodes"][0]
    assert optimized.op_counts() == {"workbench::FusedAttention": 1}
    node = optimized.nodes[0]
    attrs = wb.ir.node_attributes(node)
    assert attrs["scale"] == pytest.approx(scale, rel=1e-6) and attrs["k_transposed"] == k_transposed
    assert len(node.inputs) == n_inputs
    assert optimized.outputs[0].shape == (B, H, S, DV)      # Q's shape, V's last dim
    bare = optimized.to_proto()                             # ... by the Attention schema's own inference
    bare.graph.output[0].type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True).graph.output[0].type.tensor_type
    assert [d.dim_value for d in inferred.shape.dim] == [B, H, S, DV]
    assert not optimized.initializers
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    _numerics(graph, optimized)
    assert_idempotent(optimized, ["fuse_attention"])


def test_no_attention_is_a_noop():
    plain = wb.load(zoo.mlp(seed=0))
    optimized, report = wb.optimize(plain, only=["fuse_attention"])
    assert report.to_dataframe().empty and report.misses_dataframe().empty
    assert optimized.op_counts() == plain.op_counts()


@pytest.mark.parametrize("kwargs,reason", [
    ({"probs_out": True}, "'p' is a graph output"),
    ({"axis": 2}, "Softmax axis 2 is not the last axis (rank 4)"),
    ({"scale_value": np.full((1, H, 1, 1), 2.0)}, "the scale of the Div has shape [1, 2, 1, 1], not a scalar"),
    ({"q_shape": (1, H, S, D), "mask_shape": (B, 1, S, S)}, "batch dims broadcast"),
])
def test_near_miss_is_left_intact(kwargs, reason):
    graph = wb.load(attention_model(**kwargs))
    optimized, report = wb.optimize(graph, only=["fuse_attention"])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    misses = report.misses_dataframe()
    assert misses["node"].tolist() == ["softmax"] and reason in misses["reason"][0]


def _bert_feeds():
    rng = np.random.default_rng(3)
    mask = np.ones((2, 16), np.int64)
    mask[1, 11:] = 0
    return {"input_ids": rng.integers(0, 1000, (2, 16)), "attention_mask": mask}


def test_bert_gets_one_attention_per_layer():
    graph = wb.load(zoo.bert(seed=0))
    optimized, report = wb.optimize(graph, only=["fuse_attention"])
    rows = report.to_dataframe()
    assert len(rows) == 2 and rows["replaced_ops"][0] == ["MatMul", "Div", "Add", "Softmax", "MatMul"]
    assert optimized.op_counts()["workbench::FusedAttention"] == 2 and "Softmax" not in optimized.op_counts()
    for node in (n for n in optimized.nodes if n.op_type == "FusedAttention"):
        attrs = wb.ir.node_attributes(node)
        assert attrs["k_transposed"] == 1 and attrs["scale"] == pytest.approx(1 / 8)
        assert node.inputs[3].name == "mask/Where"
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    _numerics(graph, optimized, _bert_feeds(), wb.BuilderConfig(batch_size=2))


def test_full_optimize_of_bert_keeps_its_outputs():
    graph = wb.load(zoo.bert(seed=0))
    optimized, report = wb.optimize(graph)
    counts = optimized.op_counts()
    assert counts["workbench::FusedAttention"] == 2 and "Softmax" not in counts and "Erf" not in counts
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    _numerics(graph, optimized, _bert_feeds(), wb.BuilderConfig(batch_size=2))
    assert_idempotent(optimized, ["fuse_layernorm", "fuse_gelu", "fuse_attention", "fuse_pointwise"], same_ops=False)
