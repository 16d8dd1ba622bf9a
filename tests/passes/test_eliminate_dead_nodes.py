"""eliminate_dead_nodes: unread nodes and initializers go (with pre-IR-4 input entries); graph
outputs and everything they read stay."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import rel_l2
from workbench.evaluate import zoo

PASS = "eliminate_dead_nodes"
F = TensorProto.FLOAT


def _model(nodes, outputs, inits=(), ir_version=8, opset=17) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("x", F, [2, 3])]
    if ir_version < 4:      # before IR 4 every initializer is also a graph input
        inputs += [helper.make_tensor_value_info(k, F, list(v.shape)) for k, v in inits]
    graph = helper.make_graph(nodes, "g", inputs, [onnx.ValueInfoProto(name=o) for o in outputs],
                              [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _check_same_outputs(original: wb.Graph, optimized: wb.Graph, feeds: dict, tol=1e-6):
    want = wb.build(original).create_context().run(feeds)
    got = wb.build(optimized).create_context().run(feeds)
    assert sorted(got) == sorted(want)
    for name in want:
        assert rel_l2(got[name], want[name]) <= tol, name


def _x() -> dict:
    return {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}


def test_removes_dead_chains_and_unread_initializers():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu"),
             helper.make_node("Sigmoid", ["a"], ["s"], name="dead_sigmoid"),
             helper.make_node("Mul", ["s", "w"], ["m"], name="dead_mul"),
             helper.make_node("Constant", [], ["k"], name="dead_const", value_float=1.0)]
    inits = [("b", np.ones(3, np.float32)), ("w", np.ones(3, np.float32)), ("unused", np.ones(3, np.float32))]
    graph = wb.load(_model(nodes, ["y"], inits))
    optimized, report = wb.optimize(graph, only=[PASS])
    rows = report.to_dataframe()
    assert list(rows["replaced_nodes"]) == [["dead_sigmoid"], ["dead_mul"], ["dead_const"], ["w", "unused"]]
    assert rows["replaced_ops"].iloc[-1] == ["initializer", "initializer"]
    assert optimized.op_counts() == {"Add": 1, "Relu": 1}
    assert sorted(optimized.initializers) == ["b"]
    _check_same_outputs(graph, optimized, _x())
    again, second = wb.optimize(optimized, only=[PASS])
    assert second.to_dataframe().empty and again.op_counts() == optimized.op_counts()


def test_everything_read_is_kept():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    graph = wb.load(_model(nodes, ["y", "a", "b"], [("b", np.ones(3, np.float32))]))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts() and sorted(optimized.initializers) == ["b"]


def test_old_models_lose_the_input_entry_of_a_dropped_initializer():
    nodes = [helper.make_node("Add", ["x", "b"], ["y"], name="add")]
    inits = [("b", np.ones(3, np.float32)), ("unused", np.ones(3, np.float32))]
    graph = wb.load(_model(nodes, ["y"], inits, ir_version=3, opset=9))
    assert [v.name for v in graph.ir_graph.inputs] == ["x", "b", "unused"]
    optimized, report = wb.optimize(graph, only=[PASS])
    assert list(report.to_dataframe()["replaced_nodes"]) == [["unused"]]
    assert [v.name for v in optimized.ir_graph.inputs] == ["x", "b"]
    assert sorted(optimized.initializers) == ["b"]
    assert [s.name for s in optimized.inputs] == ["x"]
    _check_same_outputs(graph, optimized, _x())


def test_bert_cleanup_after_folding_its_shape_chains():
    graph = wb.load(zoo.bert(seed=0, batch=2))
    folded, _ = wb.optimize(graph, only=["fold_constants"])
    optimized, report = wb.optimize(folded, only=[PASS])
    rows = report.to_dataframe()
    assert len(rows) == 1 and "unread initializers dropped" in rows["detail"][0]
    dropped = set(rows["replaced_nodes"][0])
    assert {"const.index0", "embeddings.token_type_ids", "embeddings.position_ids"} <= dropped
    assert not dropped & set(optimized.initializers)
    assert optimized.op_counts() == folded.op_counts()
    read = {v.name for n in optimized.nodes for v in n.inputs if v is not None}
    assert set(optimized.initializers) <= read
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(0, 100, (2, 16)).astype(np.int64),
             "attention_mask": np.ones((2, 16), np.int64)}
    _check_same_outputs(graph, optimized, feeds)
