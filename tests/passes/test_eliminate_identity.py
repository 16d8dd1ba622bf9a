"""eliminate_identity: pass-through nodes go, graph output names stay, real ops stay."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from pass_checks import assert_idempotent, assert_same_outputs, x_model

import workbench as wb
from workbench.evaluate.zoo.light import light_model

PASS = "eliminate_identity"
F = TensorProto.FLOAT


def _graph(nodes, outputs, inits=(), x_shape=(2, 3, 4)) -> wb.Graph:
    return wb.load(x_model(nodes, outputs, inits, x_shape=x_shape))


def test_removes_every_kind_of_pass_through():
    nodes = [helper.make_node("Identity", ["x"], ["a"], name="id"),
             helper.make_node("Dropout", ["a", "ratio", "train"], ["b", "mask"], name="drop"),
             helper.make_node("Cast", ["b"], ["c"], name="cast", to=F),
             helper.make_node("Reshape", ["c", "same_shape"], ["d"], name="reshape"),
             helper.make_node("Expand", ["d", "ones"], ["e"], name="expand"),
             helper.make_node("Relu", ["e"], ["y"], name="relu")]
    inits = [("ratio", np.array(0.5, np.float32)), ("train", np.array(False)),
             ("same_shape", np.array([2, -1, 4], np.int64)), ("ones", np.array([3, 1], np.int64))]
    graph = _graph(nodes, ["y"], inits)
    optimized, report = wb.optimize(graph, only=[PASS])
    rows = report.to_dataframe()
    assert list(rows["pass"]) == [PASS] * 5
    assert [r[0] for r in rows["replaced_nodes"]] == ["id", "drop", "cast", "reshape", "expand"]
    assert [r[0] for r in rows["replaced_ops"]] == ["Identity", "Dropout", "Cast", "Reshape", "Expand"]
    assert optimized.op_counts() == {"Relu": 1}
    assert optimized.nodes[0].inputs[0].name == "x"
    assert_same_outputs(graph, optimized)
    assert_idempotent(optimized, [PASS])


def test_graph_output_keeps_its_name():
    graph = _graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                    helper.make_node("Identity", ["r"], ["y"], name="id")], ["y"])
    optimized, report = wb.optimize(graph, only=[PASS])
    assert len(report.to_dataframe()) == 1
    assert optimized.op_counts() == {"Relu": 1}
    assert [o.name for o in optimized.outputs] == ["y"]
    assert optimized.nodes[0].outputs[0].name == "y"
    assert_same_outputs(graph, optimized)


def test_keeps_identity_between_graph_input_and_output():
    graph = _graph([helper.make_node("Identity", ["x"], ["y"], name="id"),
                    helper.make_node("Relu", ["x"], ["z"], name="relu")], ["y", "z"])
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    assert list(report.misses_dataframe()["node"]) == ["id"]
    assert "graph input" in report.misses_dataframe()["reason"][0]


def test_nothing_to_do_leaves_the_graph_alone():
    nodes = [helper.make_node("Reshape", ["x", "other_shape"], ["a"], name="reshape"),
             helper.make_node("Cast", ["a"], ["b"], name="cast", to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["b"], ["c"], name="cast_back", to=F),
             helper.make_node("Expand", ["c", "bigger"], ["d"], name="expand"),
             helper.make_node("Dropout", ["d"], ["y", "mask"], name="drop")]
    inits = [("other_shape", np.array([6, 4], np.int64)), ("bigger", np.array([2, 6, 4], np.int64))]
    graph = _graph(nodes, ["y", "mask"], inits)
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    assert "mask" in report.misses_dataframe().set_index("node")["reason"]["drop"]


def test_dynamic_shapes_are_not_guessed():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    graph = _graph(nodes, ["y"], [("shape", np.array([0, 3, 4], np.int64))], x_shape=("N", 3, 4))
    optimized, report = wb.optimize(graph, only=[PASS])
    assert report.to_dataframe().empty and optimized.op_counts() == {"Reshape": 1}


def test_squeezenet_loses_its_dropout():
    graph = wb.load(light_model("squeezenet"))
    assert graph.op_counts()["Dropout"] == 1
    optimized, report = wb.optimize(graph, only=[PASS])
    assert list(report.to_dataframe()["replaced_ops"]) == [["Dropout"]]
    assert "Dropout" not in optimized.op_counts()
    assert sum(optimized.op_counts().values()) == sum(graph.op_counts().values()) - 1
    assert_same_outputs(graph, optimized)
