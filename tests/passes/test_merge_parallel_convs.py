"""merge_parallel_convs: sibling convs on one input -> one wide FusedConv + SplitView."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from pass_checks import assert_sound_rewrite
from workbench.evaluate import zoo
from workbench.evaluate.zoo.light import light_model

PASSES = ["fuse_conv_act", "merge_parallel_convs"]
RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _branches(specs, cin=4, size=6) -> onnx.ModelProto:
    """Input x [N, cin, size, size]; one Conv (+ activation) per spec, each output a graph output.
    spec: (name, cout, k, bias, activation, conv attributes)."""
    nodes, inits, outputs = [], [], []
    for name, cout, k, bias, act, attrs in specs:
        inits.append(numpy_helper.from_array(_x(cout, cin, k, k), f"{name}.w"))
        inputs = ["x", f"{name}.w"]
        if bias:
            inits.append(numpy_helper.from_array(_x(cout), f"{name}.b"))
            inputs.append(f"{name}.b")
        out = f"{name}.y" if act else f"{name}.out"
        nodes.append(helper.make_node("Conv", inputs, [out], name=name, **attrs))
        if act:
            nodes.append(helper.make_node(act, [out], [f"{name}.out"], name=f"{name}.{act.lower()}"))
        outputs.append(helper.make_tensor_value_info(f"{name}.out", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                ["N", cin, size, size])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _check(graph, optimized, feeds, batch, passes=PASSES):
    assert_sound_rewrite(graph, optimized, passes, feeds, config=wb.BuilderConfig(batch_size=batch), tol=1e-5)


def _merges(report):
    rows = report.to_dataframe()
    return rows[rows["pass"] == "merge_parallel_convs"]


def test_merges_siblings_with_the_same_signature():
    pad = {"pads": [1, 1, 1, 1]}
    model = _branches([("a", 3, 1, True, "Relu", {}), ("b", 5, 1, False, "Relu", {}),
                       ("c", 2, 3, True, "Relu", pad), ("d", 4, 3, True, "Relu", {"auto_pad": "SAME_UPPER"}),
                       ("e", 2, 1, True, "Relu", {"strides": [2, 2]}), ("f", 2, 1, True, "Sigmoid", {})])
    graph = wb.load(model)
    optimized, report = wb.optimize(graph, only=PASSES)
    merges = _merges(report)
    assert merges["replaced_nodes"].tolist() == [["a", "a.relu", "b", "b.relu"], ["c", "c.relu", "d", "d.relu"]]
    assert merges["new_op"].tolist() == ["workbench::FusedConv, workbench::SplitView"] * 2
    assert "3+5 = 8 output channels" in merges["detail"].iloc[0]
    counts = optimized.op_counts()
    assert counts == {"workbench::FusedConv": 4, "workbench::SplitView": 2}
    splits = [n for n in optimized.nodes if n.op_type == "SplitView"]
    assert [[v.name for v in n.outputs] for n in splits] == [["a.out", "b.out"], ["c.out", "d.out"]]
    assert [list(n.attributes["split"].value) for n in splits] == [[3, 5], [2, 4]]
    assert [o.shape for o in optimized.outputs][:2] == [("N", 3, 6, 6), ("N", 5, 6, 6)]
    misses = report.misses_dataframe()
    assert set(misses["node"]) == {"e+e.relu", "f+f.sigmoid"}
    assert misses["reason"].str.contains("same kernel, strides").all()
    _check(graph, optimized, {"x": _x(2, 4, 6, 6)}, batch=2)


def test_plain_convs_merge_without_fuse_conv_act():
    graph = wb.load(_branches([("a", 3, 1, True, None, {}), ("b", 5, 1, True, "Relu", {})]))
    optimized, report = wb.optimize(graph, only=["merge_parallel_convs"])
    assert optimized.op_counts() == {"workbench::FusedConv": 1, "workbench::SplitView": 1, "Relu": 1}
    assert not optimized.initializers.keys() & {"a.w", "b.w", "a.b", "b.b"}     # replaced by the merged ones
    _check(graph, optimized, {"x": _x(2, 4, 6, 6)}, batch=2, passes=["merge_parallel_convs"])


def test_ineligible_siblings_are_left_intact():
    model = _branches([("a", 4, 1, True, "Relu", {"group": 2}), ("b", 4, 1, True, "Relu", {"group": 2}),
                       ("c", 3, 1, True, "Relu", {})])
    graph = wb.load(model)
    optimized, report = wb.optimize(graph, only=PASSES)
    assert _merges(report).empty and optimized.op_counts() == {"workbench::FusedConv": 3}
    reasons = report.misses_dataframe()["reason"].tolist()
    assert sum("grouped convolution" in r for r in reasons) == 2


@pytest.mark.parametrize("specs", [[("a", 3, 1, True, "Relu", {})], []])
def test_nothing_to_merge(specs):
    model = _branches(specs or [("a", 3, 1, True, None, {})])
    optimized, report = wb.optimize(wb.load(model), only=["merge_parallel_convs"])
    assert _merges(report).empty and "workbench::SplitView" not in optimized.op_counts()


def test_inception_block():
    graph = wb.load(zoo.inception_block(seed=0))
    optimized, report = wb.optimize(graph, only=PASSES)
    merges = _merges(report)
    assert len(merges) == 1
    assert merges["replaced_nodes"].iloc[0] == ["inception_3a/1x1", "inception_3a/relu_1x1",
                                               "inception_3a/3x3_reduce", "inception_3a/relu_3x3_reduce",
                                               "inception_3a/5x5_reduce", "inception_3a/relu_5x5_reduce"]
    split, = [n for n in optimized.nodes if n.op_type == "SplitView"]
    assert list(split.attributes["split"].value) == [64, 96, 16]
    assert split.inputs[0].producer().inputs[1].shape == (176, 192, 1, 1)
    assert optimized.op_counts() == {"workbench::FusedConv": 4, "workbench::SplitView": 1, "MaxPool": 1,
                                     "Concat": 1}
    _check(graph, optimized, {"input": _x(2, 192, 28, 28)}, batch=2)


def test_light_inception_v1_merges_three_1x1_convs_per_block():
    graph = wb.load(light_model("inception_v1"))
    optimized, report = wb.optimize(graph, only=PASSES)
    merges = _merges(report)
    assert len(merges) == 9 and all(len(r) == 6 for r in merges["replaced_nodes"])
    counts = optimized.op_counts()
    assert counts["workbench::SplitView"] == 9 and counts["workbench::FusedConv"] == 57 - 2 * 9
    assert all(len(n.outputs) == 3 for n in optimized.nodes if n.op_type == "SplitView")
    _check(graph, optimized, {"data_0": _x(1, 3, 224, 224)}, batch=1)


def test_googlenet_structure():
    graph = wb.load(zoo.googlenet(seed=0, image_size=32))
    optimized, report = wb.optimize(graph, only=PASSES)
    merges = _merges(report)
    assert len(merges) == 9 and optimized.op_counts()["workbench::SplitView"] == 9
    blocks = [nodes[0].split("/")[0] for nodes in merges["replaced_nodes"]]
    assert blocks == [f"inception_{b}" for b in zoo.INCEPTION_BLOCKS]
    assert all(nodes[4].endswith("/5x5_reduce") for nodes in merges["replaced_nodes"])
