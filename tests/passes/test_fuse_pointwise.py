"""fuse_pointwise: runs of elementwise ops become one workbench::PointwiseChain whose program the
CPU kernel interprets; numbers unchanged, broadcast shapes and Cast dtypes inferred, values read
outside a chain end it, and reductions / integer shape arithmetic stay out."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_sound_rewrite

import workbench as wb
from workbench.evaluate import zoo

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, consts=None, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, name=name, **attrs) for name, op, ins, outs, attrs in nodes], "pw",
        [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(k, t, s) for k, (t, s) in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in (consts or {}).items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _feeds(graph, batch=2):
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in graph.inputs:
        shape = [d if isinstance(d, int) else batch for d in spec.shape]
        feeds[spec.name] = (rng.integers(0, 5, shape) if spec.dtype.kind == "i" else rng.standard_normal(shape) * 2
                            ).astype(spec.dtype)
    return feeds


def _fuse(proto, only=("fuse_pointwise",), config=None):
    """Optimize, check validity, numerics and idempotence; return (graph, optimized, report)."""
    graph = wb.load(proto)
    optimized, report = wb.optimize(graph, only=list(only))
    assert_sound_rewrite(graph, optimized, only, _feeds(graph), config=config, tol=1e-5, check_dtype=True)
    return graph, optimized, report


def _chains(graph):
    return [n for n in graph.nodes if n.op_type == "PointwiseChain"]


def _program(node):
    return json.loads(wb.ir.node_attributes(node)["program"])


def test_chain_with_broadcast_constant_and_input():
    proto = model([("relu", "Relu", ["x"], ["a"], {}), ("sig", "Sigmoid", ["a"], ["b"], {}),
                   ("scale", "Mul", ["b", "c"], ["d"], {}), ("shift", "Add", ["z", "d"], ["y"], {})],
                  {"x": (F, [2, 3, 8]), "z": (F, [3, 1])}, {"y": (F, [2, 3, 8])},
                  {"c": np.linspace(0.5, 2, 8).astype(np.float32)})
    graph, optimized, report = _fuse(proto)
    rows = report.to_dataframe()
    assert rows["new_op"].tolist() == ["workbench::PointwiseChain"]
    assert rows["replaced_nodes"][0] == ["relu", "sig", "scale", "shift"]
    assert optimized.op_counts() == {"workbench::PointwiseChain": 1}
    node = _chains(optimized)[0]
    assert [v.name for v in node.inputs] == ["x", "c", "z"]
    assert _program(node) == [
        {"op": "Relu", "domain": "", "inputs": ["in0"], "attrs": {}},
        {"op": "Sigmoid", "domain": "", "inputs": ["t0"], "attrs": {}},
        {"op": "Mul", "domain": "", "inputs": ["t1", "in1"], "attrs": {}},
        {"op": "Add", "domain": "", "inputs": ["in2", "t2"], "attrs": {}}]
    assert optimized.outputs[0].shape == (2, 3, 8)


@pytest.mark.parametrize("nodes,size,n_inputs", [
    ([("sig", "Sigmoid", ["x"], ["s"], {}), ("silu", "Mul", ["x", "s"], ["y"], {})], 2, 1),
    ([("relu", "Relu", ["x"], ["r"], {}), ("sig", "Sigmoid", ["r"], ["s"], {}),
      ("gate", "Mul", ["r", "s"], ["y"], {})], 3, 1),                         # a diamond inside the chain
    ([("clip", "Clip", ["x", "lo", "hi"], ["c"], {}), ("leaky", "LeakyRelu", ["c"], ["l"], {"alpha": 0.2}),
      ("hswish", "HardSwish", ["l"], ["h"], {}), ("pow", "Pow", ["h", "two"], ["p"], {}),
      ("max", "Max", ["p", "x"], ["y"], {})], 5, 4),
])
def test_shapes_of_chains(nodes, size, n_inputs):
    consts = {"lo": np.array(-1, np.float32), "hi": np.array(2, np.float32), "two": np.array(2, np.float32)}
    used = {i for n in nodes for i in n[2]}
    proto = model(nodes, {"x": (F, [4, 8])}, {"y": (F, [4, 8])}, {k: v for k, v in consts.items() if k in used})
    _, optimized, report = _fuse(proto)
    assert optimized.op_counts() == {"workbench::PointwiseChain": 1}
    node = _chains(optimized)[0]
    assert len(_program(node)) == size and len(node.inputs) == n_inputs
    if size == 5:
        assert _program(node)[1]["attrs"] == {"alpha": pytest.approx(0.2)}


def test_value_read_outside_ends_the_chain():
    proto = model([("relu", "Relu", ["x"], ["a"], {}), ("exp", "Exp", ["a"], ["t"], {}),
                   ("neg", "Neg", ["t"], ["n"], {}), ("abs", "Abs", ["n"], ["y"], {})],
                  {"x": (F, [4, 8])}, {"y": (F, [4, 8]), "t": (F, [4, 8])})
    _, optimized, report = _fuse(proto)
    assert [r for r in report.to_dataframe()["replaced_nodes"]] == [["relu", "exp"], ["neg", "abs"]]
    assert optimized.op_counts() == {"workbench::PointwiseChain": 2}
    misses = report.misses_dataframe()
    assert misses["node"].tolist() == ["exp"] and "'t' is read outside one chain" in misses["reason"][0]
    assert {o.name for o in optimized.outputs} == {"y", "t"}


def _inferred(optimized) -> dict:
    """Types of intermediate values as the fused ops' own inference gives them (value_info stripped)."""
    bare = optimized.to_proto()
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True)
    return {v.name: v.type.tensor_type for v in inferred.graph.value_info}


def test_cast_in_and_out_of_a_chain():
    proto = model([("to_float", "Cast", ["ids"], ["f"], {"to": F}), ("scale", "Mul", ["f", "c"], ["m"], {}),
                   ("add", "Add", ["m", "x"], ["s"], {}),
                   ("to_half", "Cast", ["s"], ["h"], {"to": TensorProto.FLOAT16}),
                   ("softmax", "Softmax", ["h"], ["y"], {})],
                  {"ids": (TensorProto.INT64, ["N", 8]), "x": (F, [8])}, {"y": (TensorProto.FLOAT16, ["N", 8])},
                  {"c": np.array(0.25, np.float32)})
    _, optimized, _ = _fuse(proto, config=wb.BuilderConfig(input_shapes={"ids": (2, 8)}))
    assert optimized.op_counts() == {"workbench::PointwiseChain": 1, "Softmax": 1}
    assert [s["op"] for s in _program(_chains(optimized)[0])] == ["Cast", "Mul", "Add", "Cast"]
    h = _inferred(optimized)["h"]
    assert h.elem_type == TensorProto.FLOAT16 and [d.dim_param or d.dim_value for d in h.shape.dim] == ["N", 8]


def test_symbolic_broadcast_shape_is_inferred():
    """The chain's own inference (value_info stripped): numpy broadcast of its input shapes."""
    proto = model([("add", "Add", ["x", "z"], ["a"], {}), ("relu", "Relu", ["a"], ["r"], {}),
                   ("softmax", "Softmax", ["r"], ["y"], {})],
                  {"x": (F, ["N", 1, 8]), "z": (F, [4, 1])}, {"y": (F, ["N", 4, 8])})
    _, optimized, _ = _fuse(proto, config=wb.BuilderConfig(input_shapes={"x": (2, 1, 8)}))
    info = _inferred(optimized)
    assert info["r"].elem_type == F
    assert [d.dim_param or d.dim_value for d in info["r"].shape.dim] == ["N", 4, 8]


@pytest.mark.parametrize("nodes,inputs,consts", [
    ([("relu", "Relu", ["x"], ["a"], {}), ("softmax", "Softmax", ["a"], ["b"], {}),
      ("exp", "Exp", ["b"], ["y"], {})], {"x": (F, [4, 8])}, {}),              # Softmax is no pointwise op
    ([("relu", "Relu", ["x"], ["a"], {}), ("clip", "Clip", ["a", "lo"], ["y"], {})],
     {"x": (F, [4, 8]), "lo": (F, [])}, {}),                                    # bounds from an input
    ([("add", "Add", ["i", "one"], ["a"], {}), ("mul", "Mul", ["a", "one"], ["y"], {})],
     {"i": (TensorProto.INT64, [4, 8])}, {"one": np.array(1, np.int64)}),       # integer arithmetic
    ([("relu", "Relu", ["x"], ["y"], {})], {"x": (F, [4, 8])}, {}),             # a single op
])
def test_not_a_chain_is_a_noop(nodes, inputs, consts):
    dtype = next(iter(inputs.values()))[0]
    proto = model(nodes, inputs, {"y": (dtype, [4, 8])}, consts)
    graph, optimized, report = _fuse(proto)
    assert report.to_dataframe().empty and optimized.op_counts() == graph.op_counts()


def test_gelu_from_fuse_gelu_joins_a_chain():
    half, one, sqrt2 = (np.array(v, np.float32) for v in (0.5, 1.0, np.sqrt(2.0)))
    proto = model([("bias", "Add", ["x", "b"], ["h"], {}), ("div", "Div", ["h", "sqrt2"], ["s"], {}),
                   ("erf", "Erf", ["s"], ["e"], {}), ("one_plus", "Add", ["e", "one"], ["a"], {}),
                   ("times_x", "Mul", ["h", "a"], ["p"], {}), ("half", "Mul", ["p", "half"], ["y"], {})],
                  {"x": (F, [4, 8])}, {"y": (F, [4, 8])},
                  {"b": np.arange(8, dtype=np.float32) / 8, "sqrt2": sqrt2, "one": one, "half": half})
    _, optimized, report = _fuse(proto, only=("fuse_gelu", "fuse_pointwise"))
    assert report.to_dataframe()["new_op"].tolist() == ["workbench::FusedGelu", "workbench::PointwiseChain"]
    steps = _program(_chains(optimized)[0])
    assert [(s["op"], s["domain"], s["attrs"]) for s in steps] == [("Add", "", {}),
                                                                   ("FusedGelu", "workbench", {"approximate": "none"})]


def test_bert_chains():
    graph, optimized, report = _fuse(zoo.bert(seed=0), config=wb.BuilderConfig(batch_size=2))
    rows = report.to_dataframe()
    assert len(rows) >= 3 and set(rows["new_op"]) == {"workbench::PointwiseChain"}
    assert ["Cast", "Sub"] in rows["replaced_ops"].tolist()                   # the attention mask's 1 - m
    assert ["Add", "Add"] in rows["replaced_ops"].tolist()                    # embeddings: word + type + position
    assert "Softmax" in optimized.op_counts() and "ReduceMean" not in optimized.op_counts()
