"""Fuse Gemm or MatMul + bias + optional residual Add + activation into one `workbench::FusedGemm`.

    Gemm(A, B, C) -> [Add(·, Z)] -> [act]                ==>  FusedGemm(A, B, C, Z, activation=act)
    Gemm(A, B) | MatMul(A, W) -> [Add(·, b)] -> [Add(·, Z)] -> [act]
                                                         ==>  FusedGemm(A, B, b, Z, epilogue_bias=1, act)

i.e. Y = act(alpha * op(A) @ op(B) + beta * C + Z). `b` is a constant bias per output column
(shape [N], [1, N], ... or a scalar); `W` a constant 2-D weight (A may be N-D); `Z` a tensor of
the output's shape (a residual; symbolic dims are taken as equal). Activations (see `epilogue`):
Relu, Clip (constant bounds), LeakyRelu, Sigmoid, Tanh, HardSwish, SiLU written as x * Sigmoid(x),
and Gelu (workbench::FusedGelu from fuse_gelu, or ONNX Gelu) with activation_params [1] for the tanh
approximation, else [0].
A bias Add after a Gemm that already has C is not folded (the sum would round differently), and
a Gemm or MatMul with nothing to fuse after it is left alone.
"""
from __future__ import annotations

import logging

import onnx_ir as ir

from workbench.ir.fused.gemm import GEMM_ATTRS
from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import STANDARD_DOMAINS, attr, const_array, fused_node, only_consumer
from workbench.passes.epilogue import EXTRA_ACTIVATIONS, epilogue_match

__all__ = ["FuseGemmEpiloguePass"]
log = logging.getLogger(__name__)


class FuseGemmEpiloguePass(FusionPass):
    name = "fuse_gemm_epilogue"
    level = 2

    def pattern(self, node: ir.Node) -> Match | None:
        if node.op_type not in ("Gemm", "MatMul") or node.domain not in STANDARD_DOMAINS:
            return None
        nodes, value, captures = [node], node.outputs[0], {"bias": None}
        nxt = only_consumer(value)
        if not _has_c(node) and _is_add(nxt) and (bias := _bias(nxt, value)) is not None:
            captures["bias"] = bias
            nodes, value = nodes + [nxt], nxt.outputs[0]
        return epilogue_match(nodes, value, captures, extra_ops=EXTRA_ACTIVATIONS)

    def check(self, match: Match) -> str | None:
        product, residual = match.nodes[0], match.captures["residual"]
        if product.op_type == "MatMul":
            weight = const_array(product.inputs[1])
            if weight is None or weight.ndim != 2:
                return f"MatMul weight {product.inputs[1].name!r} is not a constant 2-D matrix"
        if residual is not None:
            out, other = product.outputs[0].shape, residual.shape
            if not _same_shape(out, other):
                return f"residual {residual.name!r} shape {other} differs from the product's shape {out}"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        product, graph = match.nodes[0], match.nodes[0].graph
        attributes = {k: attr(product, k) for k in GEMM_ATTRS} if product.op_type == "Gemm" else {}
        c = product.inputs[2] if _has_c(product) else None
        if match.captures["bias"] is not None:
            c, attributes["epilogue_bias"] = match.captures["bias"], 1
        inputs = [product.inputs[0], product.inputs[1], c, match.captures["residual"]]
        while inputs[-1] is None:
            inputs.pop()
        attributes["activation"] = match.captures["activation"]
        attributes["activation_params"] = match.captures["params"] or None
        node = fused_node("FusedGemm", inputs, attributes, match.nodes, graph)
        return [node], [node.outputs[0]]


def _has_c(node: ir.Node) -> bool:
    return node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None


def _is_add(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Add" and node.domain in STANDARD_DOMAINS and len(node.inputs) == 2


def _bias(add: ir.Node, value: ir.Value) -> ir.Value | None:
    """The constant per-column bias added to `value` (all dims but the last are 1), or None."""
    other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
    array = const_array(other)
    shape = value.shape
    if other is value or array is None or shape is None or len(shape) == 0 or array.ndim > len(shape):
        return None
    columns = shape[-1]
    last = array.shape[-1] if array.ndim else 1
    if any(d != 1 for d in array.shape[:-1]) or last not in (1, columns):
        return None
    return other


def _same_shape(a: ir.Shape | None, b: ir.Shape | None) -> bool:
    """Equal shapes; two symbolic dims count as equal (shape inference names one batch dim
    differently along different paths, e.g. N and unk__6)."""
    if a is None or b is None or len(a) != len(b):
        return False
    return all(x == y or (not isinstance(x, int) and not isinstance(y, int)) for x, y in zip(a, b))
