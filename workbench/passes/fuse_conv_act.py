"""Fuse Conv + bias + optional residual Add + activation into one `workbench::FusedConv` ("CBR").

    Conv(X, W, B0) -> [Add(·, b)] -> [Add(·, Z)] -> [act]   ==>   FusedConv(X, W, B0 + b, Z, activation=act)

`b` is a constant broadcastable to one value per output channel (folded into the bias); `Z` a
tensor of the conv output's shape (a residual). Activations: Relu, Clip (constant min/max, i.e.
Relu6), LeakyRelu, Sigmoid, HardSwish, and SiLU written as x * Sigmoid(x).
A Conv with nothing to fuse after it is left alone.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from workbench.ir.fused.conv import CONV_ATTRS
from workbench.passes.base import FusionPass, Match, attr, const_array, fused_node, only_consumer

__all__ = ["FuseConvActivationPass"]
log = logging.getLogger(__name__)

_SIMPLE = {"Relu", "Sigmoid", "HardSwish", "LeakyRelu", "Clip"}


class FuseConvActivationPass(FusionPass):
    name = "fuse_conv_act"

    def pattern(self, node: ir.Node) -> Match | None:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            return None
        nodes, value = [node], node.outputs[0]
        captures = {"bias": [], "residual": None, "activation": "", "params": []}
        nxt = only_consumer(value)
        if nxt is not None and nxt.op_type == "Add" and (bias := _channel_constant(nxt, value)) is not None:
            captures["bias"].append(bias)
            nodes, value, nxt = nodes + [nxt], nxt.outputs[0], only_consumer(nxt.outputs[0])
        if nxt is not None and nxt.op_type == "Add" and (other := _residual(nxt, value)) is not None:
            captures["residual"] = other
            nodes, value = nodes + [nxt], nxt.outputs[0]
        act = _activation(value)
        if act is not None:
            act_nodes, captures["activation"], captures["params"] = act
            nodes, value = nodes + act_nodes, act_nodes[-1].outputs[0]
        if len(nodes) == 1:
            return None
        return Match(nodes, [value], captures)

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
                bias = _initializer(graph, f"{conv.name}.fused_bias", np.asarray(total, np.float32))
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


def _residual(add: ir.Node, value: ir.Value) -> ir.Value | None:
    if len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
    if other is value or const_array(other) is not None:
        return None
    return other


def _activation(value: ir.Value):
    """(nodes, name, params) of the activation applied to `value`, or None."""
    nxt = only_consumer(value)
    users = {id(u.node): u.node for u in value.uses()}
    if nxt is None and len(users) == 2 and not value.is_graph_output():
        sigmoid = next((n for n in users.values() if n.op_type == "Sigmoid"), None)
        mul = next((n for n in users.values() if n.op_type == "Mul"), None)
        if sigmoid and mul and only_consumer(sigmoid.outputs[0]) is mul:
            return [sigmoid, mul], "SiLU", []
        return None
    if nxt is None or nxt.op_type not in _SIMPLE or nxt.domain not in ("", "ai.onnx"):
        return None
    if nxt.op_type == "LeakyRelu":
        return [nxt], "LeakyRelu", [float(attr(nxt, "alpha", 0.01))]
    if nxt.op_type == "Clip":
        bounds = _clip_bounds(nxt)
        return None if bounds is None else ([nxt], "Clip", bounds)
    return [nxt], nxt.op_type, []


def _clip_bounds(clip: ir.Node) -> list[float] | None:
    if "min" in clip.attributes or "max" in clip.attributes:      # opset < 11
        return [float(attr(clip, "min", -np.inf)), float(attr(clip, "max", np.inf))]
    bounds = []
    for index, default in ((1, -np.inf), (2, np.inf)):
        value = clip.inputs[index] if len(clip.inputs) > index else None
        if value is None:
            bounds.append(default)
            continue
        array = const_array(value)
        if array is None:
            return None
        bounds.append(float(array))
    return bounds


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    taken = set(graph.initializers)
    unique, k = name, 1
    while unique in taken:
        k += 1
        unique = f"{name}_{k}"
    value = ir.Value(name=unique, const_value=ir.tensor(array, name=unique))
    value.shape, value.dtype = ir.Shape(array.shape), ir.DataType.from_numpy(array.dtype)
    graph.register_initializer(value)
    return value
