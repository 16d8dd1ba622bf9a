"""Fuse Conv + bias + optional residual Add + activation into one `workbench::FusedConv` ("CBR").

    Conv(X, W, B0) -> [Add(·, b)] -> [Add(·, Z)] -> [act]   ==>   FusedConv(X, W, B0 + b, Z, activation=act)

`b` is a constant broadcastable to one value per output channel (folded into the bias); `Z` a
tensor of the conv output's shape (a residual). Activations: Relu, Clip (constant min/max, i.e.
Relu6), LeakyRelu, Sigmoid, HardSwish, and SiLU written as x * Sigmoid(x) (`epilogue.ACTIVATIONS`).
A Conv with nothing to fuse after it is left alone.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from workbench.ir.fused.conv import CONV_ATTRS
from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import STANDARD_DOMAINS, add_initializer, attr, const_array, fused_node, only_consumer
from workbench.passes.epilogue import epilogue_match

__all__ = ["FuseConvActivationPass"]
log = logging.getLogger(__name__)


class FuseConvActivationPass(FusionPass):
    name = "fuse_conv_act"

    def pattern(self, node: ir.Node) -> Match | None:
        if node.op_type != "Conv" or node.domain not in STANDARD_DOMAINS:
            return None
        nodes, value, captures = [node], node.outputs[0], {"bias": []}
        nxt = only_consumer(value)
        if nxt is not None and nxt.op_type == "Add" and (bias := _channel_constant(nxt, value)) is not None:
            captures["bias"].append(bias)
            nodes, value = nodes + [nxt], nxt.outputs[0]
        match = epilogue_match(nodes, value, captures)
        readers = {id(u.node) for u in value.uses()}
        if match is None and len(readers) > 1:
            self.why_not(node, f"{value.name!r} is read by {len(readers)} nodes, so it must be written out")
        return match

    def check(self, match: Match) -> str | None:
        conv, residual = match.nodes[0], match.captures["residual"]
        if residual is not None:
            out, other = conv.outputs[0].shape, residual.shape
            if out is None or other is None or list(out) != list(other):
                return f"residual {residual.name!r} shape {other} differs from the conv output shape {out}"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        conv, graph = match.nodes[0], match.nodes[0].graph
        inputs = list(conv.inputs[:2])
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        if match.captures["bias"]:
            total = sum(match.captures["bias"])
            if bias is not None:
                total = total + const_array(bias) if const_array(bias) is not None else None
            if total is not None:
                bias = add_initializer(graph, f"{conv.name}.fused_bias", np.asarray(total, np.float32),
                                       self.model.ir_version)
        inputs.append(bias)
        inputs.append(match.captures["residual"])
        while inputs and inputs[-1] is None:
            inputs.pop()
        attributes = {k: attr(conv, k) for k in CONV_ATTRS}
        attributes["activation"] = match.captures["activation"]
        attributes["activation_params"] = match.captures["params"] or None
        node = fused_node("FusedConv", inputs, attributes, match.nodes, graph)
        return [node], [node.outputs[0]]


def _channel_constant(add: ir.Node, value: ir.Value):
    """The per-output-channel constant added to the conv output, flattened, or None."""
    other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
    array = const_array(other)
    channels = value.shape[1] if value.shape is not None and len(value.shape) > 1 else None
    if array is None or not isinstance(channels, int) or array.dtype != np.float32:
        return None
    rank = len(value.shape)
    squeezed = array.reshape(array.shape[-rank:] if array.ndim >= rank else array.shape)
    if array.size == channels and array.ndim >= rank - 1 and array.shape[-(rank - 1)] == channels \
            and int(np.prod(array.shape)) == channels:
        return squeezed.reshape(-1)
    return None
