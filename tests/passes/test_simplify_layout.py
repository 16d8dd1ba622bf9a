"""simplify_layout: Transpose and Reshape chains collapse to one op (or none) without changing
results; a 0 in a Reshape target is only resolved when the dim it copies is static."""
from __future__ import annotations

import numpy as np
from onnx import helper
from pass_checks import assert_idempotent, assert_same_outputs, x_model

import workbench as wb
from workbench.evaluate.zoo.light import light_model

PASS = "simplify_layout"


def _graph(nodes, outputs, inits=(), x_shape=(2, 3, 4, 5)) -> wb.Graph:
    return wb.load(x_model(nodes, outputs, [(k, np.array(v, np.int64)) for k, v in inits], x_shape=x_shape))


def _optimize(graph: wb.Graph):
    optimized, report = wb.optimize(graph, only=[PASS])
    assert_idempotent(optimized, [PASS])
    assert_same_outputs(graph, optimized)
    return optimized, report.to_dataframe(), report.misses_dataframe()


def test_transpose_of_transpose_composes_the_perms():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t1", perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["t"], ["y"], name="t2", perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    optimized, rows, _ = _optimize(_graph(nodes, ["z"]))
    assert list(rows["new_node"]) == ["t1+t2"] and list(rows["replaced_nodes"]) == [["t1", "t2"]]
    assert optimized.op_counts() == {"Transpose": 1, "Relu": 1}
    transpose = optimized.nodes[0]
    assert list(transpose.attributes["perm"].value) == [0, 1, 3, 2]
    assert transpose.metadata_props["workbench.source_nodes"] == "t1,t2"


def test_cancelling_transposes_vanish_and_the_output_keeps_its_name():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Transpose", ["r"], ["t"], name="t1", perm=[0, 3, 1, 2]),
             helper.make_node("Transpose", ["t"], ["y"], name="t2", perm=[0, 2, 3, 1])]
    optimized, rows, _ = _optimize(_graph(nodes, ["y"]))
    assert list(rows["replaced_nodes"]) == [["t1", "t2"]] and "a no-op" in rows["detail"][0]
    assert optimized.op_counts() == {"Relu": 1}
    assert [o.name for o in optimized.outputs] == ["y"] and optimized.nodes[0].outputs[0].name == "y"


def test_identity_perm_goes_unless_two_graph_outputs_would_merge():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Transpose", ["r"], ["y"], name="same", perm=[0, 1, 2, 3]),
             helper.make_node("Transpose", ["y"], ["z"], name="kept", perm=[0, 1, 2, 3])]
    optimized, rows, misses = _optimize(_graph(nodes, ["y", "z"]))
    assert list(rows["replaced_nodes"]) == [["same"]]
    assert optimized.op_counts() == {"Relu": 1, "Transpose": 1}
    assert [o.name for o in optimized.outputs] == ["y", "z"]
    assert "graph output" in misses.set_index("node")["reason"]["kept"]


def test_first_transpose_stays_when_something_else_reads_it():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t1", perm=[3, 2, 1, 0]),
             helper.make_node("Transpose", ["t"], ["y"], name="t2", perm=[1, 0, 2, 3]),
             helper.make_node("Relu", ["t"], ["z"], name="relu")]
    optimized, rows, _ = _optimize(_graph(nodes, ["y", "z"]))
    assert list(rows["replaced_nodes"]) == [["t2"]]
    assert optimized.op_counts() == {"Transpose": 2, "Relu": 1}


def test_reshape_of_reshape_keeps_the_last_target():
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["a"], name="r1"),
             helper.make_node("Reshape", ["a", "target"], ["y"], name="r2")]
    optimized, rows, _ = _optimize(_graph(nodes, ["y"], [("flat", [6, -1]), ("target", [3, -1, 10])]))
    assert list(rows["new_node"]) == ["r1+r2"] and list(rows["detail"]) == ["shape [3, -1, 10]"]
    assert optimized.op_counts() == {"Reshape": 1}
    assert optimized.nodes[0].inputs[0].name == "x"


def test_a_zero_is_resolved_from_a_static_dim_or_the_chain_is_kept():
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["a"], name="r1"),
             helper.make_node("Reshape", ["a", "copy0"], ["y"], name="r2")]
    inits = [("flat", [6, -1]), ("copy0", [0, 2, 10])]
    optimized, rows, _ = _optimize(_graph(nodes, ["y"], inits))
    assert list(rows["detail"]) == ["shape [6, 2, 10]"]
    assert optimized.op_counts() == {"Reshape": 1}

    nodes = [helper.make_node("Reshape", ["x", "keep"], ["a"], name="r1"),
             helper.make_node("Reshape", ["a", "copy0"], ["y"], name="r2")]
    graph = _graph(nodes, ["y"], [("keep", [0, -1]), ("copy0", [0, 3, 20])], x_shape=("N", 3, 4, 5))
    optimized, rows, misses = _optimize(graph)
    assert rows.empty and optimized.op_counts() == {"Reshape": 2}
    assert "not static" in misses.set_index("node")["reason"]["r2"]


def test_reshape_chain_back_to_the_input_shape_vanishes():
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["a"], name="r1"),
             helper.make_node("Reshape", ["a", "back"], ["b"], name="r2"),
             helper.make_node("Relu", ["b"], ["y"], name="relu")]
    optimized, rows, _ = _optimize(_graph(nodes, ["y"], [("flat", [-1]), ("back", [2, 3, 4, 5])]))
    assert list(rows["replaced_nodes"]) == [["r1", "r2"]] and list(rows["new_node"]) == [""]
    assert optimized.op_counts() == {"Relu": 1}


def test_nothing_to_do_leaves_the_graph_alone():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t", perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"], name="r"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    graph = _graph(nodes, ["y"], [("shape", [2, -1])])
    optimized, rows, _ = _optimize(graph)
    assert rows.empty and optimized.op_counts() == graph.op_counts()


def test_shufflenet_channel_shuffle_is_left_alone():
    graph = wb.load(light_model("shufflenet"))      # Reshape -> Transpose -> Reshape: nothing to collapse
    optimized, rows, _ = _optimize(graph)
    assert rows.empty and optimized.op_counts() == graph.op_counts()
