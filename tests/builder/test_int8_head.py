"""A CNN's classifier head in INT8 on the CPU: Q/DQ insertion quantizes a GlobalAveragePool that
feeds a quantized Gemm, the builder runs it as QGlobalAveragePool and the Gemm as a 1x1 FusedQConv
(builder/int8_gemm.py), and the engine gives the numbers of the Q/DQ graph run as written."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import int8_engine_pair
from workbench.backends.cpu.registry import NodeInfo, lookup
from workbench.quant.insert_qdq import plan_qdq


def _head_model(fc_nodes, fc_inits, out_dim: int, seed: int = 0, flatten: bool = True) -> onnx.ModelProto:
    """conv 3->8 + relu -> GlobalAveragePool -> [Flatten] -> fc_nodes (reading "f") -> "y"."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
             for name, shape in [("w0", (8, 3, 3, 3)), ("b0", (8,))] + fc_inits]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("GlobalAveragePool", ["r0"], ["g"], name="gap")]
    nodes.append(helper.make_node("Flatten", ["g"], ["f"], name="flatten") if flatten
                 else helper.make_node("Identity", ["g"], ["f"], name="same"))
    graph = helper.make_graph(nodes + fc_nodes, "head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


FC_B = [("wf", (5, 8)), ("bf", (5,))]
HEADS = {
    "gemm_transB": ([helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)], FC_B),
    "gemm_KxN": ([helper.make_node("Gemm", ["f", "wk", "bf"], ["y"], name="fc")], [("wk", (8, 5)), ("bf", (5,))]),
    # fc -> relu fuses into a FusedGemm, whose int8 output feeds a second quantized fc
    "two_fcs": ([helper.make_node("Gemm", ["f", "wf", "bf"], ["h"], name="fc", transB=1),
                 helper.make_node("Relu", ["h"], ["hr"], name="relu"),
                 helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], name="fc2", transB=1)],
                FC_B + [("w2", (4, 5)), ("b2", (4,))]),
    "matmul": ([helper.make_node("MatMul", ["f", "wk"], ["y"], name="fc")], [("wk", (8, 5))]),
    "alpha": ([helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1, alpha=0.5)], FC_B),
}


@pytest.mark.parametrize("head", sorted(HEADS))
def test_head_runs_on_int8_with_the_qdq_graph_numbers(head):
    nodes, inits = HEADS[head]
    fused, reference = int8_engine_pair(_head_model(nodes, inits, 5), 10)
    ops = [layer.op for layer in fused.layers]
    assert "QGlobalAveragePool" in ops and "GlobalAveragePool" not in ops
    gemm_left = 1 if head == "alpha" else 0                  # alpha != 1: not a 1x1 convolution
    assert ops.count("Gemm") + ops.count("FusedGemm") + ops.count("MatMul") == gemm_left
    assert ops.count("FusedQConv") == 1 + {"two_fcs": 2}.get(head, 1 - gemm_left)
    if head == "two_fcs":                                     # int8 from fc+relu to fc2, no Q/DQ between
        assert [op for op in ops if op in ("QuantizeLinear", "DequantizeLinear")] == ["QuantizeLinear"]
    x = {"x": np.random.default_rng(7).standard_normal((4, 3, 10, 10)).astype(np.float32)}
    got = fused.create_context().run(x)["y"]
    want = reference.create_context().run(x)["y"]
    assert got.shape == want.shape and np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_pool_read_by_a_float_node_stays_float():
    """The pool's output is the graph's output (through Identity -> nothing quantized reads it)."""
    nodes = [helper.make_node("Flatten", ["f"], ["y"], name="flat2")]
    model = _head_model(nodes, [], 8, flatten=False)
    graph, _ = wb.optimize(wb.load(model))
    decisions = {d.node: d for d in plan_qdq(graph)}
    assert not decisions["gap"].quantized and "not read by quantized nodes" in decisions["gap"].reason


def test_quantized_pool_feeding_fc_is_planned():
    nodes, inits = HEADS["gemm_transB"]
    graph, _ = wb.optimize(wb.load(_head_model(nodes, inits, 5)))
    decisions = {d.node: d for d in plan_qdq(graph)}
    assert decisions["gap"].quantized and decisions["gap"].activations == ("r0",)
    assert decisions["gap"].weights == ()


def test_qglobal_average_pool_kernel_is_the_exact_integer_computation():
    """Integer sum over the pixels, times the float32 factor M / count, half to even, saturated."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (2, 6, 7, 7)).astype(np.int8)
    m = np.float32(24.5)                                     # factor exactly 0.5: odd sums are ties
    got = lookup("workbench", "QGlobalAveragePool")([x, np.array(m)], {}, NodeInfo(1))
    acc = x.astype(np.int64).sum(axis=(2, 3), keepdims=True)
    want = np.clip(np.rint(acc / 2), -128, 127).astype(np.int8)      # rint: half to even
    assert got.dtype == np.int8 and got.shape == (2, 6, 1, 1) and np.array_equal(got, want)
    assert (acc % 2 == 1).any()
    loud = lookup("workbench", "QGlobalAveragePool")([x, np.array(np.float32(4900))], {}, NodeInfo(1))
    assert set(np.unique(loud).tolist()) <= {-128, 0, 127} and (loud == 127).any() and (loud == -128).any()
