"""Fold the head transposes around a `workbench::FusedAttention` into the attention itself.

A transformer splits heads as Reshape [B, S, H*D] -> [B, S, H, D], then Transpose(0, 2, 1, 3) to
[B, H, S, D] (the key often Transpose(0, 2, 3, 1) to [B, H, D, S]), and merges them back as
Transpose(0, 2, 1, 3) then Reshape [B, S, H*D]. Each of those four transposes copies a whole
activation. An attention kernel can read Q, K, V and write Y in the [B, S, H, D] order directly
(a head is then a column block of every row), so:

    Transpose(Q) Transpose(K) Transpose(V) -> FusedAttention -> Transpose
        ==>  FusedAttention(Q, K, V, M, qkv_layout="bshd", k_transposed=0)

The mask keeps the scores' [B, H, Sq, Sk] broadcast. All four transposes must be present and read
by nothing else; otherwise the attention is left as it is and the report says why.
"""
from __future__ import annotations

import onnx_ir as ir

from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import attr, fused_node, is_fused, is_op, producer_op

__all__ = ["FoldAttentionTransposesPass"]

_HEADS_FIRST = [0, 2, 1, 3]       # [B, S, H, D] <-> [B, H, S, D]
_KEY_TRANSPOSED = [0, 2, 3, 1]    # [B, S, H, D] -> [B, H, D, S]


class FoldAttentionTransposesPass(FusionPass):
    name = "fold_attention_transposes"
    level = 2

    def pattern(self, node: ir.Node) -> Match | None:
        if not (is_fused(node, "FusedAttention") and attr(node, "qkv_layout", "bhsd") == "bhsd"):
            return None
        k_transposed = attr(node, "k_transposed", 0)
        wanted = [_HEADS_FIRST, _KEY_TRANSPOSED if k_transposed else _HEADS_FIRST, _HEADS_FIRST]
        transposes = [producer_op(value, "Transpose") for value in node.inputs[:3]]
        uses = list(node.outputs[0].uses())
        after = uses[0].node if len(uses) == 1 else None
        if not is_op(after, "Transpose"):
            return None
        if any(t is None or list(attr(t, "perm") or []) != perm for t, perm in zip(transposes, wanted)):
            return None
        if list(attr(after, "perm") or []) != _HEADS_FIRST:
            return None
        return Match(transposes + [node, after], [after.outputs[0]],
                     {"attention": node, "sources": [t.inputs[0] for t in transposes]})

    def check(self, match: Match) -> str | None:
        if len({id(t) for t in match.nodes[:3]}) != 3:
            return "Q, K and V come from one transpose"
        for value in match.captures["sources"]:
            if value.shape is not None and len(value.shape) != 4:
                return f"{value.name!r} has rank {len(value.shape)}, not 4 ([B, S, H, D])"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        attention = match.captures["attention"]
        mask = list(attention.inputs[3:4])
        attributes = {"scale": attr(attention, "scale", 1.0), "k_transposed": 0, "qkv_layout": "bshd"}
        node = fused_node("FusedAttention", match.captures["sources"] + mask, attributes, match.nodes,
                          attention.graph, name=f"{attention.name}+heads")
        return [node], [node.outputs[0]]
