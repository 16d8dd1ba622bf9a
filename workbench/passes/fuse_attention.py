"""Fuse scaled dot-product attention into one `workbench::FusedAttention`.

    S = MatMul(Q * c_q, K^T) * c          (c as Mul(c) or Div(1/c); c_q an optional scalar on Q)
    P = Softmax(S + M, axis=-1)           (additive mask M optional, any producer)
    Y = MatMul(P, V)
        ==>  Attention(Q, K, V, M, scale=c * c_q, k_transposed=...)

K^T is either Transpose(K, perm swapping the last two dims), absorbed (k_transposed=0), or any
other tensor already laid out [.., D, S] (k_transposed=1), e.g. BERT's Transpose(0, 2, 3, 1)
of the reshaped key. Anchored at the Softmax. The mask must broadcast to the scores without
enlarging them, and the output must have Q's shape with V's last dim.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import attr, fused_node, is_op, only_consumer, producer_op, split_constant

__all__ = ["FuseAttentionPass"]
log = logging.getLogger(__name__)


class FuseAttentionPass(FusionPass):
    name = "fuse_attention"
    level = 2

    def pattern(self, node: ir.Node) -> Match | None:
        if not is_op(node, "Softmax"):
            return None
        probs = node.outputs[0]
        context = next((u.node for u in probs.uses() if is_op(u.node, "MatMul") and u.node.inputs[0] is probs), None)
        if context is None:
            return None
        mask, masked, chain = None, [], _scores(node.inputs[0])
        add = producer_op(node.inputs[0], "Add")
        if chain is None and add is not None and len(add.inputs) == 2:
            for i in (0, 1):
                chain = _scores(add.inputs[i])
                if chain is not None:
                    mask, masked = add.inputs[1 - i], [add]
                    break
        if chain is None:
            return None
        matmul, scaled, factors = chain
        q, kt = matmul.inputs
        front = []
        prescale = producer_op(q, "Mul", "Div")
        found = split_constant(prescale) if prescale is not None and only_consumer(q) is matmul else None
        if found is not None and np.size(found[1]) == 1:    # a scalar on Q: part of the scale
            q, front, factors = found[0], [prescale], factors + [(prescale.op_type, found[1])]
        k, k_transposed = kt, 1
        transpose = producer_op(kt, "Transpose")
        if transpose is not None and only_consumer(kt) is matmul and _swaps_last_two(transpose):
            k, k_transposed, front = transpose.inputs[0], 0, front + [transpose]
        nodes = front + [matmul] + scaled + masked + [node, context]
        return Match(nodes, [context.outputs[0]],
                     {"q": q, "k": k, "v": context.inputs[1], "mask": mask, "k_transposed": k_transposed,
                      "factors": factors, "softmax": node, "scores": matmul.outputs[0], "masked": masked})

    def check(self, match: Match) -> str | None:
        c = match.captures
        for op, array in c["factors"]:
            if np.size(array) != 1:
                return f"the scale of the {op} has shape {list(np.shape(array))}, not a scalar"
        softmax = c["softmax"]
        rank = len(softmax.inputs[0].shape) if softmax.inputs[0].shape is not None else None
        opset = self.model.opset_imports.get("", 17)
        axis = attr(softmax, "axis", -1 if opset >= 13 else 1)
        if axis != -1 and axis != (rank or 0) - 1:
            return f"Softmax axis {axis} is not the last axis (rank {rank})"
        q, v, out = c["q"].shape, c["v"].shape, match.outputs[0].shape
        if q is None or v is None or out is None or len(q) < 2 or len(v) < 2:
            return "ranks of Q, V or the output are unknown or below 2"
        want = list(q)[:-1] + [v[-1]]
        if len(out) != len(want) or any(_differ(a, b) for a, b in zip(out, want)):
            return f"output shape {list(out)} is not Q's shape with V's last dim {want} (batch dims broadcast)"
        if c["mask"] is not None:
            scores, masked = c["scores"].shape, c["masked"][0].outputs[0].shape
            if scores is not None and masked is not None and (
                    len(masked) != len(scores) or any(_differ(a, b) for a, b in zip(masked, scores))):
                return f"mask {c['mask'].name!r} broadcasts the scores {list(scores)} to {list(masked)}"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        c = match.captures
        scale = 1.0
        for op, array in c["factors"]:
            value = float(np.ravel(array)[0])
            scale = scale / value if op == "Div" else scale * value
        inputs = [c["q"], c["k"], c["v"]] + ([c["mask"]] if c["mask"] is not None else [])
        node = fused_node("FusedAttention", inputs, {"scale": scale, "k_transposed": c["k_transposed"]},
                          match.nodes, match.nodes[0].graph)
        return [node], [node.outputs[0]]


def _scores(value: ir.Value):
    """(MatMul, scale nodes, [(op, constant)]) when `value` is MatMul(Q, K^T), optionally scaled."""
    matmul = producer_op(value, "MatMul")
    if matmul is not None:
        return matmul, [], []
    scale = producer_op(value, "Mul", "Div")
    found = split_constant(scale) if scale is not None else None
    matmul = producer_op(found[0], "MatMul") if found else None
    if matmul is None:
        return None
    return matmul, [scale], [(scale.op_type, found[1])]


def _swaps_last_two(transpose: ir.Node) -> bool:
    perm = attr(transpose, "perm")
    if perm is None:
        return False
    n = len(perm)
    return n >= 2 and list(perm) == list(range(n - 2)) + [n - 1, n - 2]


def _differ(a, b) -> bool:
    """Two dims known to differ (symbolic dims are given the benefit of the doubt)."""
    return isinstance(a, int) and isinstance(b, int) and a != b
