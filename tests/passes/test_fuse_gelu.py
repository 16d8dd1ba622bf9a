"""fuse_gelu: every exporter spelling of GELU becomes one workbench::FusedGelu, numbers unchanged;
near-misses (wrong constant, an intermediate read elsewhere) stay as they are, with the reason."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_idempotent, assert_same_outputs

import workbench as wb
from workbench.evaluate import zoo

SQRT2 = math.sqrt(2.0)
K = math.sqrt(2 / math.pi)


def _model(nodes, consts: dict[str, float], outputs=("y",)) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()]
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, name=name) for name, op, ins, outs in nodes], "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, 3, 8]) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _erf_head(divide=True):
    if divide:
        return [("div", "Div", ["x", "sqrt2"], ["s"])], {"sqrt2": SQRT2}
    return [("scale", "Mul", ["inv_sqrt2", "x"], ["s"])], {"inv_sqrt2": 1 / SQRT2}


def _tanh_head(power=True):
    cube = [("cube", "Pow", ["x", "three"], ["x3"])] if power else \
        [("square", "Mul", ["x", "x"], ["x2"]), ("cube", "Mul", ["x2", "x"], ["x3"])]
    nodes = cube + [("coef", "Mul", ["x3", "c"], ["cx3"]), ("inner", "Add", ["x", "cx3"], ["u"]),
                    ("outer", "Mul", ["k", "u"], ["s"])]
    return nodes, {"c": 0.044715, "k": K, **({"three": 3.0} if power else {})}


TAILS = {   # (1 + e) meets x and 0.5 in the orders exporters use
    "x_then_half": [("one_plus", "Add", ["e", "one"], ["a"]), ("times_x", "Mul", ["x", "a"], ["p"]),
                    ("half", "Mul", ["p", "half"], ["y"])],
    "half_x_first": [("half_x", "Mul", ["half", "x"], ["h"]), ("one_plus", "Add", ["one", "e"], ["a"]),
                     ("times", "Mul", ["h", "a"], ["y"])],
    "half_on_sum": [("one_plus", "Add", ["e", "one"], ["a"]), ("half", "Mul", ["a", "half"], ["b"]),
                    ("times_x", "Mul", ["b", "x"], ["y"])],
}


def gelu_model(form="erf", variant=True, tail="x_then_half", extra=None, consts=None):
    head, values = _erf_head(variant) if form == "erf" else _tanh_head(variant)
    op = "Erf" if form == "erf" else "Tanh"
    nodes = head + [("core", op, ["s"], ["e"])] + TAILS[tail] + (extra or [])
    values = {**values, "one": 1.0, "half": 0.5, **(consts or {})}
    return _model(nodes, values, outputs=("y",) + tuple(n[3][0] for n in (extra or [])))


def _numerics(graph, optimized, tol=1e-5):
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32) * 3
    assert_same_outputs(graph, optimized, {"x": x}, tol=tol)


@pytest.mark.parametrize("form,variant", [("erf", True), ("erf", False), ("tanh", True), ("tanh", False)])
@pytest.mark.parametrize("tail", list(TAILS))
def test_gelu_spellings_fuse(form, variant, tail):
    graph = wb.load(gelu_model(form, variant, tail))
    optimized, report = wb.optimize(graph, only=["fuse_gelu"])
    rows = report.to_dataframe()
    assert rows["new_op"].tolist() == ["workbench::FusedGelu"]
    assert len(rows["replaced_nodes"][0]) == len(graph.nodes)
    assert optimized.op_counts() == {"workbench::FusedGelu": 1}
    node = optimized.nodes[0]
    assert wb.ir.node_attributes(node)["approximate"] == ("none" if form == "erf" else "tanh")
    assert not optimized.initializers                      # the absorbed constants are gone
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    assert optimized.outputs[0].shape == (2, 3, 8)
    _numerics(graph, optimized)
    assert_idempotent(optimized, ["fuse_gelu"])


def test_no_gelu_is_a_noop():
    graph = wb.load(_model([("relu", "Relu", ["x"], ["r"]), ("erf", "Erf", ["r"], ["y"])], {}))
    optimized, report = wb.optimize(graph, only=["fuse_gelu"])
    assert report.to_dataframe().empty and report.misses_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()


def test_intermediate_read_elsewhere_is_left_intact():
    extra = [("side", "Neg", ["e"], ["side_out"])]                 # the Erf output is also read here
    graph = wb.load(gelu_model(extra=extra))
    optimized, report = wb.optimize(graph, only=["fuse_gelu"])
    assert report.to_dataframe().empty
    assert optimized.op_counts() == graph.op_counts()
    misses = report.misses_dataframe()
    assert misses["pass_name"].tolist() == ["fuse_gelu"]
    assert "'e' is also read by ['side']" in misses["reason"][0]


@pytest.mark.parametrize("consts,reason", [({"sqrt2": 2.0}, "divisor of X is 2, expected 1.41421"),
                                           ({"half": 0.45}, "half factor is 0.45, expected 0.5"),
                                           ({"one": 1.001}, "added constant is 1.001, expected 1"),
                                           ({"three": 2.0}, "exponent of X is 2, expected 3")])
def test_wrong_constant_is_not_fused(consts, reason):
    graph = wb.load(gelu_model("tanh" if "three" in consts else "erf", consts=consts))
    optimized, report = wb.optimize(graph, only=["fuse_gelu"])
    assert report.to_dataframe().empty and optimized.op_counts() == graph.op_counts()
    assert report.misses_dataframe()["reason"].tolist() == [reason]


def test_constant_within_tolerance_fuses():
    graph = wb.load(gelu_model(consts={"sqrt2": 1.41421}))          # 4e-6 off: a rounded literal
    optimized, report = wb.optimize(graph, only=["fuse_gelu"])
    assert optimized.op_counts() == {"workbench::FusedGelu": 1}
    _numerics(graph, optimized)


def test_bert_gets_one_gelu_per_layer():
    graph = wb.load(zoo.bert(seed=0))
    optimized, report = wb.optimize(graph, only=["fuse_gelu"])
    rows = report.to_dataframe()
    assert len(rows) == 2 and set(rows["new_op"]) == {"workbench::FusedGelu"}
    assert rows["replaced_ops"][0] == ["Div", "Erf", "Add", "Mul", "Mul"]
    assert optimized.op_counts()["workbench::FusedGelu"] == 2
    assert "Erf" not in optimized.op_counts()
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    rng = np.random.default_rng(1)
    feeds = {"input_ids": rng.integers(0, 1000, (2, 16)), "attention_mask": np.ones((2, 16), np.int64)}
    assert_same_outputs(graph, optimized, feeds, config=wb.BuilderConfig(batch_size=2), tol=1e-5)
