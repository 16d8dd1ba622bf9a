"""Graph-level weight transforms: weight-only INT8 (TFLite "dynamic range" style) and 2:4 pruning.

Both act on the constant weight (operand 1) of Conv, Gemm, MatMul (standard domain) and FusedConv,
FusedGemm (workbench domain), return a NEW Graph (the input is left untouched) and a pandas report.

    quantize_weights_int8:  W (float32) ──▶  W_int8 ──DequantizeLinear(s_w, axis)──▶ W' ──▶ Conv/Gemm/...
        s_w[c] = max |W[c]| / 127 per output channel (the axis insert_qdq uses), activations stay float.
    prune_2to4: in every group of 4 weights along the reduction axis keep the 2 largest |w|:
        Conv [O, I, kh, kw] -> the [O, I*kh*kw] view, axis -1;  Gemm transB=1 [N, K] -> axis -1,
        transB=0 [K, N] -> axis 0;  MatMul B [K, N] -> axis 0 (batched [..., K, N]: K of every batch).
        A layer whose reduction length is not a multiple of 4 is skipped and listed with the reason.

    >>> qgraph, report = quantize_weights_int8(graph)
    >>> sparse, report = prune_2to4(graph)
    >>> is_2to4(sparse)
    {'conv1.weight': False, 'conv2.weight': True, ...}
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from workbench.ir import Graph, load
from workbench.passes.edit import add_initializer, attr, const_array, producer_op, unique_node_name
from workbench.quant import sparsity
from workbench.quant.errors import SparsityError
from workbench.quant.insert_qdq import (QUANTIZABLE_OPS, _drop_float_weights, _fresh, _is_candidate,
                                        _is_constant, _name_output, _weight_axis, check_qdq_opset)
from workbench.quant.quantize import quantize, weight_scales
from workbench.quant.weight_only import along

__all__ = ["quantize_weights_int8", "prune_2to4", "is_2to4", "WEIGHT_OPS"]

WEIGHT_OPS = QUANTIZABLE_OPS                      # Conv, Gemm, MatMul, FusedConv, FusedGemm
_QUANT_COLUMNS = ["tensor", "node", "shape", "fp32_bytes", "int8_bytes", "max_abs_error"]
_PRUNE_COLUMNS = ["tensor", "node", "pruned", "reason", "density"]


def _weight_nodes(graph: Graph) -> list[tuple[ir.Node, ir.Value]]:
    """(node, constant operand 1) of every weight op, in graph order."""
    out = []
    for node in graph.ir_graph:
        if not _is_candidate(node, WEIGHT_OPS) or len(node.inputs) < 2:
            continue
        w = node.inputs[1]
        if w is not None and _is_constant(w):
            out.append((node, w))
    return out


def _node_name(node: ir.Node) -> str:
    return node.name or node.op_type


def _reload(result: Graph, source: str) -> Graph:
    return Graph(load(result.to_proto()).model, source)


# -- weight-only INT8 ----------------------------------------------------------------------------

def quantize_weights_int8(graph: Graph):
    """A copy of `graph` whose float32 constant weights are int8 initializers + DequantizeLinear.

    Per-output-channel symmetric scales (axis as in insert_qdq: 0 for Conv and Gemm transB=1, the last
    for Gemm transB=0 / MatMul); opset < 13 gets one scale per tensor. A weight read by several nodes
    (with the same axis) is quantized once. Operands already from DequantizeLinear are left alone.

    Returns:
        (new Graph, DataFrame with one row per quantized weight: tensor, node, shape, fp32_bytes,
        int8_bytes (values + float32 scales), max_abs_error (|W - dequantized W|, max)).
    """
    import pandas as pd
    per_channel = check_qdq_opset(graph) >= 13
    result = graph.copy()
    g, ir_version = result.ir_graph, result.model.ir_version
    done: dict[tuple[str, int | None], ir.Value] = {}
    replaced: list[ir.Value] = []
    rows = []
    for node, w in _weight_nodes(result):
        if w.dtype != ir.DataType.FLOAT or producer_op(w, "DequantizeLinear"):
            continue
        array = const_array(w)
        if array is None or array.size == 0:
            continue
        axis = _weight_axis(node, 1, array.ndim) if per_channel else None
        key = (w.name, axis)
        if key not in done:
            q, s, done[key] = _int8_weight(g, node, w, array, axis, ir_version)
            replaced.append(w)
            deq = q.astype(np.float32) * along(s, q.ndim, axis, dtype=np.float32)
            err = np.abs(array.astype(np.float64) - deq.astype(np.float64))
            rows.append({"tensor": w.name, "node": _node_name(node), "shape": tuple(array.shape),
                         "fp32_bytes": int(array.nbytes), "int8_bytes": int(q.nbytes + s.nbytes),
                         "max_abs_error": float(err.max())})
        node.replace_input_with(1, done[key])
    _drop_float_weights(result, replaced)
    return _reload(result, graph.source), pd.DataFrame(rows, columns=_QUANT_COLUMNS)


def _int8_weight(graph: ir.Graph, node: ir.Node, w: ir.Value, array: np.ndarray, axis: int | None,
                 ir_version: int) -> tuple[np.ndarray, np.ndarray, ir.Value]:
    """int8 initializer + float32 scale initializer -> DequantizeLinear(axis) inserted before `node`.

    No zero-point input: symmetric int8 has zero point 0, the DequantizeLinear default for int8 input
    (one initializer less per weight in the model and the saved plan).
    """
    scale = weight_scales(array, axis)
    q = quantize(array, scale, axis=axis)
    base = w.name or f"{_node_name(node)}.weight"
    qv = add_initializer(graph, _fresh(graph, f"{base}_quantized"), q, ir_version)
    sv = add_initializer(graph, _fresh(graph, f"{base}_scale"), scale, ir_version)
    attributes = [ir.AttrInt64("axis", axis)] if axis is not None else []
    dq = ir.Node("", "DequantizeLinear", [qv, sv], attributes,
                 name=unique_node_name(graph, f"{_node_name(node)}/weight_dq"))
    graph.insert_before(node, dq)
    return q, scale, _name_output(graph, dq, f"{base}_dequantized", ir.DataType.FLOAT, array.shape)


# -- 2:4 sparsity --------------------------------------------------------------------------------

def _reduction_view(node: ir.Node, w: np.ndarray) -> tuple[np.ndarray, int]:
    """(w or a reshaped view of it, axis) so that sparsity.prune_2to4/is_2to4(view, axis) group the
    reduction dimension of `node`'s weight operand."""
    op = node.op_type
    if op in ("Conv", "FusedConv"):
        return w, -1                                   # sparsity views >2-D as [O, I*kh*kw]
    if op in ("Gemm", "FusedGemm"):
        return w, (-1 if attr(node, "transB", 0) else 0)
    # MatMul B: [K] -> axis 0; [K, N] -> axis 0; [..., K, N] -> [(...)*K, N] (K % 4 == 0 keeps every
    # group of 4 inside one batch; otherwise the length check below fails on K itself)
    if w.ndim > 2:
        k = w.shape[-2]
        if k % 4:
            raise SparsityError(f"2:4 sparsity: MatMul weight of shape {tuple(w.shape)} has reduction "
                                f"length {k}, not a multiple of 4", w.shape, k)
        return w.reshape(-1, w.shape[-1]), 0
    return w, 0


def _reduction_length(node: ir.Node, w: np.ndarray) -> int:
    if node.op_type == "MatMul" and w.ndim > 2:
        return int(w.shape[-2])
    view, axis = _reduction_view(node, w) if w.ndim else (w, -1)
    return sparsity.reduction_length(view, axis)


def prune_2to4(graph: Graph, *, min_size: int = 0):
    """A copy of `graph` whose eligible constant weights are magnitude-pruned to the 2:4 pattern.

    Args:
        graph: left untouched.
        min_size: weights with fewer elements are skipped (small layers gain nothing).
    Returns:
        (new Graph, DataFrame with one row per weight: tensor, node, pruned, reason ("" when pruned,
        else why skipped: not float32, too small, reduction length not a multiple of 4, ...),
        density (nonzero fraction of the weight in the result)).
    Never raises for an ineligible layer: it is skipped and listed.
    """
    import pandas as pd
    result = graph.copy()
    seen: dict[str, tuple[str, int]] = {}              # tensor -> (node, row index)
    rows = []
    for node, w in _weight_nodes(result):
        name, nname = w.name, _node_name(node)
        array = const_array(w)
        if name in seen:
            # already handled for another reader; its reduction axis must agree with this one
            first, index = seen[name]
            if rows[index]["pruned"] and not _check(node, array):
                rows.append(_row(name, nname, False, f"shared with {first!r}, whose reduction axis differs: "
                                 f"not 2:4 along this node's", array))
            continue
        seen[name] = (nname, len(rows))
        if array is None or producer_op(w, "DequantizeLinear"):
            rows.append(_row(name, nname, False, "not a plain constant", array))
            continue
        if w.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE):
            rows.append(_row(name, nname, False, f"dtype {w.dtype} is not floating point", array))
            continue
        if array.size < min_size:
            rows.append(_row(name, nname, False, f"size {array.size} < min_size {min_size}", array))
            continue
        if array.ndim == 0:
            rows.append(_row(name, nname, False, "scalar weight", array))
            continue
        try:
            view, axis = _reduction_view(node, array)
            pruned, _ = sparsity.prune_2to4(view, axis)
        except SparsityError as exc:
            rows.append(_row(name, nname, False, f"reduction length {_reduction_length(node, array)} is "
                             f"not a multiple of 4 ({exc})", array))
            continue
        pruned = pruned.reshape(array.shape).astype(array.dtype)
        _set_constant(w, pruned)
        rows.append(_row(name, nname, True, "", pruned))
    return _reload(result, graph.source), pd.DataFrame(rows, columns=_PRUNE_COLUMNS)


def _row(tensor: str, node: str, pruned: bool, reason: str, array) -> dict:
    density = float(np.count_nonzero(array) / array.size) if array is not None and array.size else float("nan")
    return {"tensor": tensor, "node": node, "pruned": pruned, "reason": reason, "density": density}


def _set_constant(value: ir.Value, array: np.ndarray) -> None:
    """Replace the data of an initializer or Constant output in place (its readers keep reading it)."""
    if value.const_value is not None:
        value.const_value = ir.tensor(array, name=value.name)
        return
    producer = value.producer()
    producer.attributes["value"] = ir.AttrTensor("value", ir.tensor(array, name=value.name))


def _check(node: ir.Node, array: np.ndarray | None) -> bool:
    if array is None or array.ndim == 0:
        return False
    try:
        view, axis = _reduction_view(node, array)
    except SparsityError:
        return False
    return sparsity.is_2to4(view, axis)


def is_2to4(graph: Graph) -> dict[str, bool]:
    """Weight tensor name -> whether it has the 2:4 pattern along its node's reduction axis.

    Covers the constant operand 1 of every weight op; an operand that comes from DequantizeLinear of a
    constant (weight-only / Q/DQ graphs) is checked on the stored integer tensor, keyed by its name.
    A weight read by several nodes is True only if it is 2:4 for all of them.
    """
    out: dict[str, bool] = {}
    for node in graph.ir_graph:
        if not _is_candidate(node, WEIGHT_OPS) or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        w = node.inputs[1]
        dq = producer_op(w, "DequantizeLinear")
        if dq is not None and dq.inputs[0] is not None and _is_constant(dq.inputs[0]):
            w = dq.inputs[0]
        elif not _is_constant(w):
            continue
        ok = _check(node, const_array(w))
        out[w.name] = out.get(w.name, True) and ok
    return out
