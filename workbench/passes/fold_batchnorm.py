"""Fold an inference BatchNormalization into the Conv or Gemm that feeds it.

    BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta = s * y + (beta - s * mean),  s = gamma / sqrt(var + eps)

    Conv:  W' = W * s[:, None, ...]                    b' = (b - mean) * s + beta
    Gemm:  B' = B * s[None, :]  (B[:, n] scales)       C' = (beta_gemm * C - mean) * s + beta, beta_gemm' = 1
           B' = B * s[:, None]  when transB = 1

The producer must read constant weights (and bias), have the BN as its only reader, and
(for a `workbench::FusedConv`) carry neither a residual nor an activation. The math runs in
float64 and is cast back to the weight dtype. W' and b' are new initializers: the old ones may
be shared with other nodes; the FusionPass base drops them once nothing reads them any more.
A folded standard-domain node cannot carry a `source_nodes` attribute, so its original node
names go into `node.metadata_props["workbench.source_nodes"]` (comma-joined; see `fused_node`).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import onnx_ir as ir

from workbench.ir import WORKBENCH_DOMAIN
from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import STANDARD_DOMAINS, add_initializer, attr, const_array, fused_node

__all__ = ["FoldBatchNormPass"]
log = logging.getLogger(__name__)


class FoldBatchNormPass(FusionPass):
    name = "fold_batchnorm"
    level = 1
    _detail = ""                       # of the rewrite being recorded

    def record(self, new_nodes: Sequence[ir.Node], replaced: Sequence[ir.Node], detail: str = "") -> None:
        super().record(new_nodes, replaced, detail or self._detail)

    def pattern(self, node: ir.Node) -> Match | None:
        if node.op_type != "BatchNormalization" or node.domain not in STANDARD_DOMAINS:
            return None
        producer = node.inputs[0].producer() if node.inputs[0] is not None else None
        if producer is None or _kind(producer) is None:
            source = f"{producer.op_type} {producer.name!r}" if producer is not None else "a graph input"
            self.why_not(node, f"its input comes from {source}, not from a Conv or Gemm")
            return None
        return Match([producer, node], [node.outputs[0]])

    def check(self, match: Match) -> str | None:
        producer, bn = match.nodes
        if len(bn.outputs) > 1 or attr(bn, "training_mode", 0):
            return "BatchNormalization in training mode (it outputs running statistics)"
        if not attr(bn, "spatial", 1):
            return "BatchNormalization with spatial=0 (per-element statistics)"
        params = [const_array(v) for v in bn.inputs[1:5]]
        if len(params) < 4 or any(p is None for p in params):
            return "BatchNormalization scale, bias, mean or variance is not constant"
        weight = const_array(producer.inputs[1]) if len(producer.inputs) > 1 else None
        if weight is None or weight.ndim < 2:
            return f"{producer.op_type} {producer.name!r} weights are not a constant tensor"
        bias = producer.inputs[2] if len(producer.inputs) > 2 else None
        if bias is not None and const_array(bias) is None:
            return f"{producer.op_type} {producer.name!r} bias is not constant"
        if _kind(producer) == "FusedConv" and ((len(producer.inputs) > 3 and producer.inputs[3] is not None)
                                               or attr(producer, "activation", "")):
            return f"FusedConv {producer.name!r} already applies a residual or an activation"
        channels = _channels(producer, weight)
        if any(np.shape(p) != (channels,) for p in params):
            return f"BatchNormalization parameters are not of shape ({channels},)"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        producer, bn = match.nodes
        graph = bn.graph
        gamma, beta, mean, var = (const_array(v).astype(np.float64) for v in bn.inputs[1:5])
        eps = float(attr(bn, "epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        self._detail = f"{scale.size} channels, eps={eps:g}"
        weight_value = producer.inputs[1]
        bias_value = producer.inputs[2] if len(producer.inputs) > 2 else None
        weight = const_array(weight_value)
        w = weight.astype(np.float64)
        b = const_array(bias_value).astype(np.float64) if bias_value is not None else np.zeros(1)
        attributes: dict[str, Any] = {k: ir.Attr(k, a.type, a.value) for k, a in producer.attributes.items()
                                      if k != "source_nodes"}
        if producer.op_type == "Gemm":
            w = w * (scale[:, None] if attr(producer, "transB", 0) else scale[None, :])
            b = float(attr(producer, "beta", 1.0)) * (b if bias_value is not None else 0.0)
            attributes["beta"] = 1.0
        else:
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (b - mean) * scale + beta
        inputs = [producer.inputs[0], None, None]
        domain = WORKBENCH_DOMAIN if producer.domain == WORKBENCH_DOMAIN else ""
        node = fused_node(producer.op_type, inputs, attributes, match.nodes, graph, domain=domain)
        version = self.model.ir_version
        node.replace_input_with(1, add_initializer(graph, f"{node.name}.weight", w.astype(weight.dtype), version))
        node.replace_input_with(2, add_initializer(graph, f"{node.name}.bias", b.astype(weight.dtype), version))
        return [node], [node.outputs[0]]


def _kind(node: ir.Node) -> str | None:
    if node.domain in STANDARD_DOMAINS and node.op_type in ("Conv", "Gemm"):
        return node.op_type
    if node.domain == WORKBENCH_DOMAIN and node.op_type == "FusedConv":
        return "FusedConv"
    return None


def _channels(producer: ir.Node, weight: np.ndarray) -> int:
    if producer.op_type == "Gemm":
        return int(weight.shape[0] if attr(producer, "transB", 0) else weight.shape[1])
    return int(weight.shape[0])
