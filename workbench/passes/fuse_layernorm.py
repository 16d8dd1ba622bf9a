"""Fuse LayerNorm, decomposed the way exporters write it, into one `workbench::FusedLayerNorm`.

    m = ReduceMean(X, axes)           d = X - m
    v = ReduceMean(d^2, axes)         (d^2 as Pow(d, 2) or d * d)
    Y = d / Sqrt(v + eps)             (or d * Reciprocal(Sqrt(v + eps)))
    Y = Y * gamma + beta              (optional; gamma, beta constants)
        ==>  LayerNorm(X, gamma, beta, axis=-len(axes), epsilon=eps)

`axes` must be the trailing axes (an attribute before opset 18, an input from 18), the same in
both ReduceMeans, with keepdims=1. gamma/beta must have the normalized shape (leading 1s and
scalars are reshaped), so the fused op never broadcasts its output larger than X.
A standard LayerNormalization node is already one node and is left as it is.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import add_initializer, attr, const_array, fused_node, is_op, only_consumer, reader_op

__all__ = ["FuseLayerNormPass"]
log = logging.getLogger(__name__)


class FuseLayerNormPass(FusionPass):
    name = "fuse_layernorm"
    level = 2

    def pattern(self, node: ir.Node) -> Match | None:
        if not is_op(node, "ReduceMean"):
            return None
        x, mean = node.inputs[0], node.outputs[0]
        sub = reader_op(mean, "Sub")
        if sub is None or sub.inputs[0] is not x or sub.inputs[1] is not mean:
            return None
        d = sub.outputs[0]
        square = next((u.node for u in d.uses() if (is_op(u.node, "Pow") and u.node.inputs[0] is d)
                       or (is_op(u.node, "Mul") and u.node.inputs[0] is d and u.node.inputs[1] is d)), None)
        var = reader_op(square.outputs[0], "ReduceMean") if square is not None else None
        add = reader_op(var.outputs[0], "Add") if var is not None else None
        sqrt = reader_op(add.outputs[0], "Sqrt") if add is not None else None
        if sqrt is None:
            return None
        nodes = [node, sub, square, var, add, sqrt]
        div = reader_op(sqrt.outputs[0], "Div")
        if div is not None and div.inputs[0] is d and div.inputs[1] is sqrt.outputs[0]:
            nodes.append(div)
        else:
            inverse = reader_op(sqrt.outputs[0], "Reciprocal")
            div = reader_op(inverse.outputs[0], "Mul") if inverse is not None else None
            if div is None or set(map(id, div.inputs)) != {id(d), id(inverse.outputs[0])}:
                return None
            nodes += [inverse, div]
        eps = add.inputs[1] if add.inputs[0] is var.outputs[0] else add.inputs[0]
        captures = {"x": x, "reduces": [node, var], "eps": const_array(eps), "gamma": None, "beta": None,
                    "exponent": const_array(square.inputs[1]) if square.op_type == "Pow" else 2.0}
        y = div.outputs[0]
        for key, op in (("gamma", "Mul"), ("beta", "Add")):
            nxt = only_consumer(y)
            if nxt is None or not is_op(nxt, op) or len(nxt.inputs) != 2:
                continue
            other = nxt.inputs[1] if nxt.inputs[0] is y else nxt.inputs[0]
            if const_array(other) is None:
                continue
            captures[key] = other
            nodes.append(nxt)
            y = nxt.outputs[0]
        return Match(nodes, [y], captures)

    def check(self, match: Match) -> str | None:
        c = match.captures
        x = c["x"]
        if x.shape is None:
            return f"rank of {x.name!r} is unknown"
        rank = len(x.shape)
        axes = [_axes(n, self.model.opset_imports.get("", 17), rank) for n in c["reduces"]]
        if axes[0] is None or axes[0] != axes[1]:
            return f"ReduceMean axes {axes[0]} and {axes[1]} differ or are missing"
        if axes[0] != list(range(rank - len(axes[0]), rank)):
            return f"ReduceMean over axes {axes[0]}, not the trailing axes of a rank-{rank} input"
        if not all(attr(n, "keepdims", 1) for n in c["reduces"]):
            return "ReduceMean has keepdims=0"
        if c["exponent"] is None or np.size(c["exponent"]) != 1 or float(np.ravel(c["exponent"])[0]) != 2.0:
            return f"the square is Pow(d, {c['exponent']}), not Pow(d, 2)"
        if c["eps"] is None or np.size(c["eps"]) != 1:
            return "epsilon is not a constant scalar"
        normalized = list(x.shape)[rank - len(axes[0]):]
        for key in ("gamma", "beta"):
            if c[key] is not None and _affine(const_array(c[key]), normalized) is None:
                return f"{key} shape {list(const_array(c[key]).shape)} is not the normalized shape {normalized}"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        c = match.captures
        graph = match.nodes[0].graph
        rank = len(c["x"].shape)
        k = len(_axes(c["reduces"][0], self.model.opset_imports.get("", 17), rank))
        normalized = list(c["x"].shape)[rank - k:]
        inputs = [c["x"]]
        for key in ("gamma", "beta"):
            value = c[key]
            if value is not None:
                array = const_array(value)
                shaped = _affine(array, normalized)
                if shaped.shape != array.shape:
                    value = add_initializer(graph, f"{match.nodes[0].name}.{key}", shaped, self.model.ir_version)
            inputs.append(value)
        while inputs[-1] is None:
            inputs.pop()
        epsilon = float(np.ravel(c["eps"])[0])
        node = fused_node("FusedLayerNorm", inputs, {"axis": -k, "epsilon": epsilon}, match.nodes, graph)
        return [node], [node.outputs[0]]


def _axes(reduce: ir.Node, opset: int, rank: int) -> list[int] | None:
    if opset >= 18:
        axes = const_array(reduce.inputs[1]) if len(reduce.inputs) > 1 else None
    else:
        axes = attr(reduce, "axes")
    if axes is None or np.size(axes) == 0:
        return None
    return sorted({int(a) % rank for a in np.ravel(axes)})


def _affine(array: np.ndarray, normalized: list) -> np.ndarray | None:
    """gamma/beta without leading 1s beyond the normalized rank, or None when it would
    broadcast X larger (a dim other than 1 or the normalized dim)."""
    extra = array.ndim - len(normalized)
    if extra > 0:
        if any(d != 1 for d in array.shape[:extra]):
            return None
        array = array.reshape(array.shape[extra:])
    for a, n in zip(reversed(array.shape), reversed(normalized)):
        if isinstance(n, int) and a not in (1, n):
            return None
    return array
