"""Explicit INT8 quantization in ONNX form: Q/DQ pairs in front of every compute node.

Why Q/DQ and not QLinearConv: a QDQ model is what TensorRT consumes for explicit quantization, what
onnxruntime runs as is, and it keeps every op of the model a standard one. A backend that has INT8
kernels fuses DQ -> Conv -> (Q) into one integer layer; the CPU oracle runs the nodes as written, and
both compute the same numbers:

    x ──Q(s_x)──▶ int8 ──DQ(s_x)──▶ x' ─┐
    W_int8 ─────────DQ(s_w, axis)──▶ W' ─┴─▶ Conv(x', W') + b

    q_x = sat(round_half_even(x / s_x))          s_x = table.scales[x]          (per tensor, z = 0)
    q_w = sat(round_half_even(W / s_w[o]))       s_w[o] = max |W[o]| / 127      (per output channel)
    y[o] = s_x * s_w[o] * sum q_x * q_w + b[o]   the sum is exact (every product of two int8 values
                                                 and its partial sums are integers), so the float Conv
                                                 over x' and W' equals the int32-accumulating kernel

Placement (TensorRT's rules for QDQ networks): only the two operands of the compute ops get Q/DQ, and
the residual of a FusedConv (so the add fuses into the integer kernel); a tensor read by several of
them is quantized once; biases stay float32; weights are stored already
quantized (int8 initializers), so the model holds int8 weights. A GlobalAveragePool whose output
(through Flatten/Reshape) only quantized compute nodes read gets Q/DQ on its input too: the
classifier head of a CNN then stays int8 (the builder runs it as QGlobalAveragePool), instead of
the last convolution writing float32 for a float pool. A node whose operand already comes
from DequantizeLinear is explicitly quantized: it is left alone and its scales win.

    >>> qgraph = insert_qdq(graph, table)
    >>> [n.name for n in qgraph.nodes][:4]
    ['normalize', 'conv1/input_q', 'conv1/input_dq', 'conv1/weight_dq']
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import onnx_ir as ir

from workbench.ir import WORKBENCH_DOMAIN, Graph, load
from workbench.passes.edit import (STANDARD_DOMAINS, add_initializer, attr, const_array,
                                   drop_unread_initializers, producer_op, unique_node_name)
from workbench.quant.errors import QuantizationError
from workbench.quant.quantize import quantize, weight_scales
from workbench.quant.table import CalibrationTable

__all__ = ["QUANTIZABLE_OPS", "POOL_OPS", "QdqDecision", "insert_qdq", "plan_qdq", "calibration_tensors", "has_qdq",
           "check_qdq_opset", "DECISIONS_KEY"]

logger = logging.getLogger(__name__)

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm")
POOL_OPS = ("GlobalAveragePool",)                       # quantized when quantized nodes read their output
_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Unsqueeze"}    # move data, keep values
_KNOWN_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm"}
_FUSED_OPS = {"FusedConv", "FusedGemm"}                  # live in the workbench domain
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                  "QLinearMatMul", "ConvInteger", "MatMulInteger"}
_SLOT_LABELS = {0: "input", 1: "weight", 3: "residual"}  # operand slot -> label in node names
_RESIDUAL_SLOT = 3                                       # FusedConv's Z: quantized so the residual add fuses
DECISIONS_KEY = "workbench.qdq_decisions"                # the result's model.meta entry (not serialized)


@dataclasses.dataclass(frozen=True)
class QdqDecision:
    """What Q/DQ insertion does with one compute node, one row of a report.

    Attributes:
        node, op: the node's name and op type.
        activations: operands computed at run time (quantized per tensor with the table's scale).
        weights: constant operands (quantized per output channel, stored as int8).
        reason: why the node stays float ("" when it is quantized).
    """
    node: str
    op: str
    activations: tuple[str, ...]
    weights: tuple[str, ...]
    reason: str = ""

    @property
    def quantized(self) -> bool:
        return not self.reason


def has_qdq(graph: Graph) -> bool:
    """The model is already quantized: it holds Q/DQ nodes (or QLinear*/integer ops)."""
    return any(node.op_type in _QUANTIZED_OPS and node.domain in STANDARD_DOMAINS for node in graph.ir_graph)


def plan_qdq(graph: Graph, table: CalibrationTable | None = None,
             ops=QUANTIZABLE_OPS) -> list[QdqDecision]:
    """One decision per node of `ops` and per POOL_OPS node, in graph order; without `table` no scale
    is required."""
    return [decision for _, decision in _plan(graph, table, ops)]


def calibration_tensors(graph: Graph, ops=QUANTIZABLE_OPS) -> list[str]:
    """Names of the activations Q/DQ insertion needs scales for (each once, in graph order).

    >>> calibration_tensors(wb.load(digits_model_path()))
    ['normalize', 'relu1', 'pool', 'flatten', 'relu4']
    """
    names = [a for d in plan_qdq(graph, None, ops) if d.quantized for a in d.activations]
    return list(dict.fromkeys(names))


def insert_qdq(graph: Graph, table: CalibrationTable, ops=QUANTIZABLE_OPS) -> Graph:
    """A copy of `graph` with Q/DQ in front of every node of `ops` whose activations have a scale.

    Args:
        graph: the float model (left untouched); existing Q/DQ are honoured.
        table: activation scales, e.g. from `calibrate_graph`.
        ops: the op types to quantize: Conv, ConvTranspose, Gemm, MatMul (standard domain), FusedConv,
            FusedGemm (workbench domain).
    Returns:
        The quantized Graph, re-loaded (checked, shapes inferred). Its `model.meta[DECISIONS_KEY]` holds
        the `QdqDecision` of every candidate node; skipped nodes are also logged (WARNING when a scale
        is missing). Per-channel weight scales need opset 13; before that weights get one scale each.
    """
    opset = check_qdq_opset(graph)
    result = graph.copy()
    g, ir_version = result.ir_graph, result.model.ir_version
    per_channel = opset >= 13
    act_dq: dict[str, ir.Value] = {}
    weight_dq: dict[tuple[str, int | None], ir.Value] = {}
    replaced: list[ir.Value] = []
    plan = _plan(result, table, ops)
    for node, decision in plan:
        if not decision.quantized:
            continue
        for slot in _operand_slots(node):
            value = node.inputs[slot]
            if value.name in decision.weights:
                array = const_array(value)
                axis = _weight_axis(node, slot, array.ndim) if per_channel else None
                if (value.name, axis) not in weight_dq:
                    weight_dq[value.name, axis] = _dequantized_weight(g, node, value, array, axis, ir_version)
                    replaced.append(value)
                node.replace_input_with(slot, weight_dq[value.name, axis])
            else:
                if value.name not in act_dq:
                    scale = _activation_scale(table, value.name)
                    act_dq[value.name] = _fake_quantize(g, node, value, scale, _SLOT_LABELS[slot], ir_version)
                node.replace_input_with(slot, act_dq[value.name])
    _drop_float_weights(result, replaced)
    decisions = [d for _, d in plan]
    skipped = [f"{d.node} ({d.reason})" for d in decisions if not d.quantized]
    if skipped:
        level = logging.WARNING if any("no scale" in d.reason for d in decisions) else logging.INFO
        logger.log(level, "insert_qdq: %d of %d nodes stay float: %s", len(skipped), len(decisions),
                   "; ".join(skipped))
    logger.info("insert_qdq: quantized %d activations and %d weights of %d nodes", len(act_dq),
                len(weight_dq), len(decisions) - len(skipped))
    out = Graph(load(result.to_proto()).model, graph.source)
    out.model.meta[DECISIONS_KEY] = decisions
    return out


def check_qdq_opset(graph: Graph) -> int:
    """The model's opset, if it has QuantizeLinear/DequantizeLinear (10; per-channel scales need 13)."""
    opset = graph.opset("")
    if opset is None or opset < 10:
        raise QuantizationError(f"{graph.source}: opset {opset} has no QuantizeLinear/DequantizeLinear "
                                f"(they need opset 10, per-channel scales 13); convert the model with "
                                f"onnx.version_converter first")
    return opset


# -- deciding ------------------------------------------------------------------------------------

def _check_ops(ops) -> tuple[str, ...]:
    ops = (ops,) if isinstance(ops, str) else tuple(ops)
    unknown = sorted(set(ops) - _KNOWN_OPS)
    if unknown:
        raise QuantizationError(f"cannot insert Q/DQ for op(s) {unknown}: which operand is the weight and "
                                f"which axis its output channels is known for {sorted(_KNOWN_OPS)}")
    return ops


def _is_candidate(node: ir.Node, ops: tuple[str, ...]) -> bool:
    if node.op_type not in ops:
        return False
    return node.domain == WORKBENCH_DOMAIN if node.op_type in _FUSED_OPS else node.domain in STANDARD_DOMAINS


def _is_constant(value: ir.Value) -> bool:
    if value.const_value is not None:
        return True
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant" and producer.domain in STANDARD_DOMAINS


def _plan(graph: Graph, table: CalibrationTable | None, ops) -> list[tuple[ir.Node, QdqDecision]]:
    ops = _check_ops(ops)
    compute = {node: _decide(node, table) for node in graph.ir_graph if _is_candidate(node, ops)}
    quantized = {node for node, decision in compute.items() if decision.quantized}
    plan = []
    for node in graph.ir_graph:
        if node in compute:
            plan.append((node, compute[node]))
        elif node.op_type in POOL_OPS and node.domain in STANDARD_DOMAINS:
            plan.append((node, _decide_pool(node, table, quantized)))
    return plan


def _final_readers(value: ir.Value) -> list[ir.Node] | None:
    """The nodes that read `value`'s data, through Flatten/Reshape/...; None if a graph output does."""
    if value.is_graph_output():
        return None
    readers = []
    for node, _ in value.uses():
        if node.op_type in _PASS_THROUGH and node.domain in STANDARD_DOMAINS and node.inputs[0] is value:
            further = _final_readers(node.outputs[0])
            if further is None:
                return None
            readers += further
        else:
            readers.append(node)
    return readers


def _decide_pool(node: ir.Node, table: CalibrationTable | None, quantized: set[ir.Node]) -> QdqDecision:
    """Quantize a pool's input when only quantized compute nodes read its output: the pool then runs
    on int8 between two int8 layers; anywhere else it would only add a rounding."""
    name, x = node.name or node.op_type, node.inputs[0] if node.inputs else None
    if x is None or _is_constant(x):
        return QdqDecision(name, node.op_type, (), (), "its input is missing or constant")
    readers = _final_readers(node.outputs[0])
    decision = QdqDecision(name, node.op_type, (x.name,), ())
    if not readers or any(r not in quantized for r in readers):
        return dataclasses.replace(decision, reason="its output is not read by quantized nodes only")
    if producer_op(x, "DequantizeLinear"):
        return dataclasses.replace(decision, reason="explicitly quantized: its input comes from DequantizeLinear")
    if x.dtype != ir.DataType.FLOAT:
        return dataclasses.replace(decision, reason=f"input {x.name!r} is {x.dtype}, not float32")
    if table is not None and x.name not in table.scales:
        return dataclasses.replace(decision, reason=f"no scale for {[x.name]} in the calibration table")
    return decision


def _operand_slots(node: ir.Node) -> tuple[int, ...]:
    """The two matmul operands, and FusedConv's residual: TensorRT fuses a residual add into an INT8
    convolution only when the residual is quantized too, so it gets Q/DQ like an input. A pool: its input."""
    if node.op_type in POOL_OPS:
        return (0,)
    has_residual = (node.op_type == "FusedConv" and len(node.inputs) > _RESIDUAL_SLOT
                    and node.inputs[_RESIDUAL_SLOT] is not None)
    return (0, 1, _RESIDUAL_SLOT) if has_residual else (0, 1)


def _decide(node: ir.Node, table: CalibrationTable | None) -> QdqDecision:
    name = node.name or node.op_type
    operands = [node.inputs[slot] for slot in _operand_slots(node)]
    if len(operands) < 2 or any(v is None for v in operands[:2]):
        return QdqDecision(name, node.op_type, (), (), "it has fewer than two operands")
    acts = tuple(dict.fromkeys(v.name for v in operands if not _is_constant(v)))
    weights = tuple(dict.fromkeys(v.name for v in operands if _is_constant(v)))

    def skip(reason: str) -> QdqDecision:
        return QdqDecision(name, node.op_type, acts, weights, reason)

    if any(producer_op(v, "DequantizeLinear") for v in operands):
        return skip("explicitly quantized: an operand already comes from DequantizeLinear")
    if not acts:
        return skip("both operands are constants (fold constants first)")
    not_float = [f"{v.name!r} is {v.dtype}" for v in operands if v.dtype != ir.DataType.FLOAT]
    if not_float:
        return skip(f"operand {', '.join(not_float)}; Q/DQ insertion quantizes float32 operands")
    if table is not None:
        missing = [a for a in acts if a not in table.scales]
        if missing:
            return skip(f"no scale for {missing} in the calibration table")
    return QdqDecision(name, node.op_type, acts, weights)


def _weight_axis(node: ir.Node, slot: int, ndim: int) -> int | None:
    """The output-channel axis of a constant operand; None (one scale) for operand 0 and vectors."""
    if slot == 0 or ndim < 2:
        return None
    if node.op_type in ("Conv", "FusedConv"):
        return 0                                     # W [O, I/g, kh, kw]
    if node.op_type == "ConvTranspose":
        return 1                                     # W [I, O/g, kh, kw]
    if node.op_type in ("Gemm", "FusedGemm") and attr(node, "transB", 0):
        return 0                                     # B [N, K]
    return ndim - 1                                  # B [K, N] (MatMul: [..., K, N])


def _activation_scale(table: CalibrationTable, name: str) -> float:
    scale = float(table.scales[name])
    if not (math.isfinite(scale) and np.float32(scale) > 0):
        raise QuantizationError(f"calibration table scale of tensor {name!r} is {scale}; it must be finite "
                                f"and > 0")
    return scale


# -- rewriting -----------------------------------------------------------------------------------

def _fresh(graph: ir.Graph, base: str) -> str:
    """`base`, `base_2`, ...: a name no value of `graph` (input, initializer, node output) has."""
    taken = {v.name for n in graph for v in n.outputs} | {v.name for v in graph.inputs} | set(graph.initializers)
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _name_output(graph: ir.Graph, node: ir.Node, base: str, dtype: ir.DataType, shape) -> ir.Value:
    out = node.outputs[0]
    out.name, out.dtype = _fresh(graph, base), dtype
    out.shape = shape.copy() if isinstance(shape, ir.Shape) else (ir.Shape(shape) if shape is not None else None)
    return out


def _fake_quantize(graph: ir.Graph, node: ir.Node, x: ir.Value, scale: float, label: str,
                   ir_version: int) -> ir.Value:
    """x -> QuantizeLinear -> DequantizeLinear, inserted before `node`; returns the dequantized value."""
    s = add_initializer(graph, _fresh(graph, f"{x.name}_scale"), np.array(scale, np.float32), ir_version)
    z = add_initializer(graph, _fresh(graph, f"{x.name}_zero_point"), np.array(0, np.int8), ir_version)
    base = node.name or node.op_type
    q = ir.Node("", "QuantizeLinear", [x, s, z], name=unique_node_name(graph, f"{base}/{label}_q"))
    q_out = _name_output(graph, q, f"{x.name}_quantized", ir.DataType.INT8, x.shape)
    dq = ir.Node("", "DequantizeLinear", [q_out, s, z], name=unique_node_name(graph, f"{base}/{label}_dq"))
    graph.insert_before(node, [q, dq])
    return _name_output(graph, dq, f"{x.name}_dequantized", ir.DataType.FLOAT, x.shape)


def _dequantized_weight(graph: ir.Graph, node: ir.Node, w: ir.Value, array: np.ndarray, axis: int | None,
                        ir_version: int) -> ir.Value:
    """An int8 initializer of `w` (symmetric, per channel along `axis`) -> DequantizeLinear before `node`."""
    scale = weight_scales(array, axis)
    q = quantize(array, scale, axis=axis)
    base = w.name or f"{node.name}.weight"
    qv = add_initializer(graph, _fresh(graph, f"{base}_quantized"), q, ir_version)
    sv = add_initializer(graph, _fresh(graph, f"{base}_scale"), scale, ir_version)
    zv = add_initializer(graph, _fresh(graph, f"{base}_zero_point"), np.zeros(scale.shape, np.int8), ir_version)
    attributes = [ir.AttrInt64("axis", axis)] if axis is not None else []
    dq = ir.Node("", "DequantizeLinear", [qv, sv, zv], attributes,
                 name=unique_node_name(graph, f"{node.name or node.op_type}/{_SLOT_LABELS[1]}_dq"))
    graph.insert_before(node, dq)
    return _name_output(graph, dq, f"{base}_dequantized", ir.DataType.FLOAT, array.shape)


def _drop_float_weights(graph: Graph, weights: list[ir.Value]) -> None:
    """Remove float weights no node reads any more: Constant nodes here, initializers in edit's helper."""
    for value in weights:
        producer = value.producer()
        if producer is not None and not value.uses() and not value.is_graph_output():
            graph.ir_graph.remove(producer, safe=True)
    drop_unread_initializers(graph.ir_graph, weights, graph.model.ir_version)
