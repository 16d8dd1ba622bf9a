"""Merge the Q, K and V projections of an attention into one GEMM (TensorRT's horizontal fusion of
the QKV matmuls), read in place by the attention.

    Y_i = X @ W_i + b_i, i = q, k, v   -->  Reshape [B, S, H, D]  -->  FusedAttention(qkv_layout="bshd")
        ==>  [Y_q, Y_k, Y_v] = SplitView(X @ [W_q W_k W_v] + [b_q b_k b_v], axis=-1, strided=1)

One [K, 3N] GEMM reads X once and keeps the tensor cores busier than three [K, N] ones (BERT-base:
N = 768 is a small GEMM for an H100), and two launches fewer per layer. The split parts are column
blocks of the merged output: strided views (`strided=1`), so the pass only fires where every part
is read by a Reshape that only splits the last axis into heads and then only by a "bshd"
FusedAttention, whose kernels take any row stride. Siblings are FusedGemm nodes reading X as A,
with constant 2-D weights (no transposes, alpha 1), constant biases added after the product
(epilogue_bias 1) or none, no residual and no activation.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.convenience import replace_nodes_and_values

from workbench.passes.base import GraphPass
from workbench.passes.edit import (add_initializer, attr, const_array, drop_unread_initializers, fused_node,
                                   is_fused, joined_name, sources_of, unique_value_name)

__all__ = ["MergeAttentionProjectionsPass"]


class MergeAttentionProjectionsPass(GraphPass):
    name = "merge_attention_projections"
    level = 2

    def apply(self, graph: ir.Graph) -> int:
        count = 0
        for node in list(graph):
            if node.graph is not graph or not is_fused(node, "FusedAttention") or attr(node, "qkv_layout") != "bshd":
                continue
            projections = [_projection(v) for v in node.inputs[:3]]
            reason = _why_not(projections)
            if reason:
                self.why_not(node, reason)
                continue
            self.merge(graph, [p for p, _ in projections])
            count += 1
        return count

    def merge(self, graph: ir.Graph, gemms: list[ir.Node]) -> None:
        x = gemms[0].inputs[0]
        weights = [const_array(g.inputs[1]) for g in gemms]
        biases = [const_array(g.inputs[2]) if _bias(g) is not None else np.zeros(w.shape[1], w.dtype)
                  for g, w in zip(gemms, weights)]
        base, version = joined_name([sources_of(g)[0] for g in gemms]), self.model.ir_version
        w = add_initializer(graph, f"{base}.weight", np.concatenate(weights, axis=1), version)
        b = add_initializer(graph, f"{base}.bias", np.concatenate(biases).astype(weights[0].dtype), version)
        old = [v for g in gemms for v in g.inputs[1:3] if v is not None]
        gemm = fused_node("FusedGemm", [x, w, b], {"epilogue_bias": 1}, gemms, graph, name=base)
        gemm.outputs[0].name = unique_value_name(graph, f"{base}/merged")
        widths = [int(a.shape[1]) for a in weights]
        split = fused_node("SplitView", [gemm.outputs[0]], {"axis": -1, "split": widths, "strided": 1}, gemms,
                           graph, num_outputs=len(gemms), name=f"{base}/split")
        replace_nodes_and_values(graph, gemms[0], gemms, [gemm, split], [g.outputs[0] for g in gemms],
                                 list(split.outputs))
        drop_unread_initializers(graph, old, version)
        self.record([gemm, split], gemms, f"Q, K and V projections of {x.name!r}: {'+'.join(map(str, widths))} "
                                          f"columns in one GEMM, read by the attention in place")


def _bias(node: ir.Node) -> ir.Value | None:
    return node.inputs[2] if len(node.inputs) > 2 else None


def _projection(value: ir.Value) -> tuple[ir.Node | None, str | None]:
    """(the FusedGemm behind Reshape(value), None) or (None, why not)."""
    reshape = value.producer()
    if reshape is None or reshape.op_type != "Reshape" or reshape.domain not in ("", "ai.onnx"):
        return None, f"{value.name!r} does not come from a Reshape"
    if len(list(value.uses())) != 1 or value.is_graph_output():
        return None, f"{value.name!r} is read by more than the attention"
    y = reshape.inputs[0]
    gemm = y.producer()
    if not is_fused(gemm, "FusedGemm"):
        return None, f"{y.name!r} does not come from a FusedGemm"
    if len(list(y.uses())) != 1 or y.is_graph_output():
        return None, f"{y.name!r} is read by more than the head split"
    shape_in, shape_out = y.shape, value.shape
    if (shape_in is None or shape_out is None or len(shape_in) != 3 or len(shape_out) != 4
            or not isinstance(shape_in[2], int) or not all(isinstance(d, int) for d in shape_out[2:])
            or shape_out[2] * shape_out[3] != shape_in[2]):
        return None, f"the Reshape of {y.name!r} does not split only its last axis into heads"
    for name, default in (("transA", 0), ("transB", 0), ("alpha", 1.0), ("activation", "")):
        if attr(gemm, name, default) != default:
            return None, f"{gemm.name!r} has {name}={attr(gemm, name)!r}"
    if len(gemm.inputs) > 3 and gemm.inputs[3] is not None:
        return None, f"{gemm.name!r} adds a residual"
    weight = const_array(gemm.inputs[1])
    if weight is None or weight.ndim != 2:
        return None, f"{gemm.name!r} has no constant 2-D weight"
    if _bias(gemm) is not None and (const_array(_bias(gemm)) is None or attr(gemm, "epilogue_bias", 0) != 1):
        return None, f"{gemm.name!r} has a bias that is not a constant added after the product"
    return gemm, None


def _why_not(projections: list[tuple[ir.Node | None, str | None]]) -> str | None:
    for gemm, reason in projections:
        if gemm is None:
            return reason
    gemms = [g for g, _ in projections]
    if len({id(g) for g in gemms}) != 3 or len({id(g.inputs[0]) for g in gemms}) != 1:
        return "Q, K and V are not three projections of one tensor"
    weights = [const_array(g.inputs[1]) for g in gemms]
    if len({(w.shape[0], str(w.dtype)) for w in weights}) != 1:
        return "the projections' weights differ in rows or dtype"
    if len({_bias(g) is None for g in gemms}) != 1:
        return "some projections have a bias and some do not"
    return None
