"""fuse_conv_act: Conv + bias + residual + activation becomes one workbench::FusedConv ("CBR"),
numbers unchanged; partial matches stay intact with a reason."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_idempotent

import workbench as wb

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)


def _model(tail_nodes, extra_inits=(), extra_inputs=(), output="y"):
    inits = [numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b"), *extra_inits]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1])] + tail_nodes
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6]), *extra_inputs]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _optimize(model):
    graph = wb.load(model)
    optimized, report = wb.optimize(graph, only=["fuse_conv_act"])
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    feeds = {s.name: (X if s.name == "x" else RNG.standard_normal((2, 4, 6, 6)).astype(np.float32))
             for s in graph.inputs}
    want = wb.build(graph).create_context().run(feeds)
    got = wb.build(optimized).create_context().run(feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    assert_idempotent(optimized, ["fuse_conv_act"], same_ops=False)
    return optimized, report


def _fused_attrs(graph):
    node = next(n for n in graph.nodes if n.op_type == "FusedConv")
    return node, wb.ir.node_attributes(node)


@pytest.mark.parametrize("act,nodes,params", [
    ("Relu", [helper.make_node("Relu", ["c"], ["y"], name="relu")], []),
    ("LeakyRelu", [helper.make_node("LeakyRelu", ["c"], ["y"], name="leaky", alpha=0.2)], [0.2]),
    ("Sigmoid", [helper.make_node("Sigmoid", ["c"], ["y"], name="sig")], []),
    ("HardSwish", [helper.make_node("HardSwish", ["c"], ["y"], name="hs")], []),
    ("SiLU", [helper.make_node("Sigmoid", ["c"], ["s"], name="sig"), helper.make_node("Mul", ["c", "s"], ["y"], name="mul")], []),
])
def test_conv_activation(act, nodes, params):
    optimized, report = _optimize(_model(nodes))
    assert optimized.op_counts() == {"workbench::FusedConv": 1}
    node, attrs = _fused_attrs(optimized)
    assert attrs["activation"] == act and list(attrs.get("activation_params", [])) == pytest.approx(params)
    assert report.to_dataframe()["replaced_nodes"][0] == ["conv"] + [n.name for n in nodes]
    assert attrs["source_nodes"] == ["conv"] + [n.name for n in nodes]


def test_relu6_clip_with_constant_bounds():
    inits = [numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
    optimized, _ = _optimize(_model([helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="relu6")], inits))
    assert _fused_attrs(optimized)[1]["activation_params"] == [0.0, 6.0]
    assert "lo" not in optimized.initializers and "hi" not in optimized.initializers   # absorbed constants dropped


def test_channel_bias_add_is_folded_into_the_bias():
    inits = [numpy_helper.from_array(RNG.standard_normal((1, 4, 1, 1)).astype(np.float32), "extra_bias")]
    optimized, _ = _optimize(_model([helper.make_node("Add", ["c", "extra_bias"], ["a"], name="bias_add"),
                                     helper.make_node("Relu", ["a"], ["y"], name="relu")], inits))
    node, attrs = _fused_attrs(optimized)
    assert len(node.inputs) == 3 and attrs["activation"] == "Relu"


@pytest.mark.parametrize("op", ["Add", "Sum"])
def test_residual_then_relu(op):
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 4, 6, 6])
    optimized, _ = _optimize(_model([helper.make_node(op, ["c", "z"], ["a"], name="residual"),
                                     helper.make_node("Relu", ["a"], ["y"], name="relu")], extra_inputs=[z]))
    node, attrs = _fused_attrs(optimized)
    assert node.inputs[3].name == "z" and attrs["activation"] == "Relu"


def test_bare_conv_is_left_alone():
    model = _model([], output="c")
    optimized, report = _optimize(model)
    assert report.to_dataframe().empty and optimized.op_counts() == {"Conv": 1}


def test_partial_match_is_left_intact_with_a_reason():
    nodes = [helper.make_node("Relu", ["c"], ["r"], name="relu"), helper.make_node("Add", ["r", "c"], ["y"], name="also_reads_conv")]
    optimized, report = _optimize(_model(nodes))
    assert "workbench::FusedConv" not in optimized.op_counts()
    misses = report.misses_dataframe()
    assert (misses["pass_name"] == "fuse_conv_act").any()


def test_resnet18_every_conv_relu_fused():
    from workbench.evaluate import zoo
    graph = wb.load(zoo.resnet18(seed=0, batch=1, image_size=64))
    optimized, report = wb.optimize(graph, only=["fold_batchnorm", "fuse_conv_act"])
    counts = optimized.op_counts()
    assert "Relu" not in counts and "BatchNormalization" not in counts
    assert counts["workbench::FusedConv"] == 17 and counts.get("Conv", 0) == 3      # 3 downsample convs feed the Add
