"""fold_constants: constant subgraphs and static Shape chains become initializers; random,
workbench-domain and oversized results stay, with the reason in the report."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper
from pass_checks import assert_idempotent, assert_same_outputs, x_model

import workbench as wb
from workbench.evaluate import zoo

PASS = "fold_constants"


def _graph(nodes, outputs, inits=(), x_shape=(2, 3, 4), opsets=(("", 17),)) -> wb.Graph:
    return wb.load(x_model(nodes, outputs, inits, x_shape=x_shape, opsets=opsets))


def test_folds_constants_and_constant_subgraphs():
    c = numpy_helper.from_array(np.arange(4, dtype=np.float32), "c")
    nodes = [helper.make_node("Constant", [], ["c"], name="const", value=c),
             helper.make_node("Mul", ["c", "two"], ["c2"], name="double"),
             helper.make_node("Add", ["x", "c2"], ["y"], name="add"),
             helper.make_node("Constant", [], ["k"], name="const_out", value_floats=[1.0, 2.0])]
    graph = _graph(nodes, ["y", "k"], [("two", np.array(2.0, np.float32))])
    optimized, report = wb.optimize(graph, only=[PASS])
    rows = report.to_dataframe()
    assert list(rows["replaced_nodes"]) == [["const"], ["double"], ["const_out"]]
    assert list(rows["detail"]) == ["c: float32[4]", "c2: float32[4]", "k: float32[2]"]
    assert optimized.op_counts() == {"Add": 1}
    assert "c2" in optimized.initializers and "k" in optimized.initializers
    np.testing.assert_array_equal(optimized.initializers["c2"].const_value.numpy(), [0, 2, 4, 6])
    assert [o.name for o in optimized.outputs] == ["y", "k"]
    assert_same_outputs(graph, optimized)
    assert_idempotent(optimized, [PASS])


def test_folds_a_static_shape_chain():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["batch"], name="batch", axis=0),
             helper.make_node("Concat", ["batch", "minus_one"], ["target"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")]
    inits = [("zero", np.array([0], np.int64)), ("minus_one", np.array([-1], np.int64))]
    graph = _graph(nodes, ["y"], inits)
    optimized, report = wb.optimize(graph, only=[PASS])
    assert [r[0] for r in report.to_dataframe()["replaced_ops"]] == ["Shape", "Gather", "Concat"]
    assert optimized.op_counts() == {"Reshape": 1}
    np.testing.assert_array_equal(optimized.nodes[0].inputs[1].const_value.numpy(), [2, -1])
    assert_same_outputs(graph, optimized)


def test_symbolic_shapes_stay_and_nothing_to_do_is_a_no_op():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    graph = _graph(nodes, ["y"], x_shape=("N", 3, 4))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty and report.misses_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()


def test_refuses_random_workbench_and_oversized_results():
    w = np.random.default_rng(1).standard_normal((2, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("RandomUniformLike", ["c"], ["noise"], name="noise"),
             helper.make_node("ConstantOfShape", ["big_shape"], ["big"], name="big",
                              value=numpy_helper.from_array(np.zeros(1, np.float32))),
             helper.make_node("FusedConv", ["img", "w"], ["conv"], name="fused", domain="workbench",
                              source_nodes=["conv"], activation="Relu"),
             helper.make_node("Add", ["x", "noise"], ["y"], name="add")]
    inits = [("c", np.zeros((2, 3, 4), np.float32)), ("big_shape", np.array([2048, 1024], np.int64)),
             ("img", np.ones((1, 3, 2, 2), np.float32)), ("w", w)]
    graph = _graph(nodes, ["y", "big", "conv"], inits, opsets=(("", 17), ("workbench", 1)))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    reasons = report.misses_dataframe().set_index("node")["reason"]
    assert "random" in reasons["noise"]
    assert "elements" in reasons["big"]
    assert "workbench" in reasons["fused"]


def test_bert_shape_chains_fold_when_the_batch_is_fixed():
    graph = wb.load(zoo.bert(seed=0, batch=2))
    optimized, report = wb.optimize(graph, only=[PASS])
    before, after = graph.op_counts(), optimized.op_counts()
    assert before["Shape"] == 1 and "Shape" not in after and "Concat" not in after and "Slice" not in after
    assert after["Reshape"] == before["Reshape"] and after["MatMul"] == before["MatMul"]
    assert len(report.to_dataframe()) == sum(before.values()) - sum(after.values())
    rng = np.random.default_rng(0)
    mask = np.ones((2, 16), np.int64)
    mask[1, 10:] = 0
    feeds = {"input_ids": rng.integers(0, 100, (2, 16)).astype(np.int64), "attention_mask": mask}
    assert_same_outputs(graph, optimized, feeds)
    assert_idempotent(optimized, [PASS], same_ops=False)
