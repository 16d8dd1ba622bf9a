"""eliminate_dead_nodes: unread nodes and initializers go (with pre-IR-4 input entries); graph
outputs and everything they read stay."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from pass_checks import assert_idempotent, assert_same_outputs, x_model

import workbench as wb
from workbench.evaluate import zoo

PASS = "eliminate_dead_nodes"


def _model(nodes, outputs, inits=(), ir_version=8, opset=17) -> onnx.ModelProto:
    return x_model(nodes, outputs, inits, x_shape=[2, 3], opsets=(("", opset),), ir_version=ir_version)


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
    assert_same_outputs(graph, optimized)
    assert_idempotent(optimized, [PASS])


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
    assert_same_outputs(graph, optimized)


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
    assert_same_outputs(graph, optimized, feeds)
