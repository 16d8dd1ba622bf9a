"""Merge sibling convolutions that read the same input into one wide `workbench::FusedConv`
whose output a `workbench::SplitView` hands back to the original readers as zero-copy views
(horizontal fusion: TensorRT's GoogLeNet inception figure).

    Y_i = act(Conv(X, W_i) + B_i), i = 1..k   ==>   [Y_1, ..., Y_k] = SplitView(act(Conv(X, W) + B))
    W = concat(W_1, ..., W_k) along output channels, B = concat(B_1, ..., B_k) (zeros for no bias)

Each output channel of a convolution depends only on its own filter, so stacking the filters
computes every Y_i at once and reads X once. Siblings are Conv or FusedConv nodes without a
residual, with X as their input, constant weights and biases, group 1, and the same kernel
shape, strides, dilations, padding (auto_pad resolved to explicit pads where the input shape is
known) and activation with its parameters; siblings that differ form separate groups.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import onnx_ir as ir
from onnx_ir.convenience import replace_nodes_and_values

from workbench.ir import WORKBENCH_DOMAIN
from workbench.passes.base import GraphPass
from workbench.passes.edit import (STANDARD_DOMAINS, add_initializer, attr, const_array, drop_unread_initializers,
                                    fused_node, joined_name, sources_of, unique_value_name)

__all__ = ["MergeParallelConvsPass"]
log = logging.getLogger(__name__)


class MergeParallelConvsPass(GraphPass):
    name = "merge_parallel_convs"
    level = 2

    def apply(self, graph: ir.Graph) -> int:
        values = list(graph.inputs) + [v for node in graph for v in node.outputs]
        count = 0
        for value in values:
            for siblings in self.groups(value):
                self.merge(graph, value, siblings)
                count += 1
        return count

    def groups(self, value: ir.Value) -> list[list[ir.Node]]:
        """Readers of `value` that can merge, grouped by signature; groups of two or more."""
        readers = list({id(u.node): u.node for u in value.uses() if u.idx == 0 and _is_conv(u.node)}.values())
        if len(readers) < 2:
            return []
        groups: dict[tuple, list[ir.Node]] = {}
        for node in readers:
            reason = _ineligible(node)
            if reason:
                self.why_not(node, f"cannot merge with the other convs reading {value.name!r}: {reason}")
                continue
            groups.setdefault(_signature(node, value), []).append(node)
        for members in groups.values():
            if len(members) == 1:
                self.why_not(members[0], f"no other conv reading {value.name!r} has the same kernel, strides, "
                                         f"pads, dilations and activation")
        return [members for members in groups.values() if len(members) > 1]

    def merge(self, graph: ir.Graph, x: ir.Value, siblings: list[ir.Node]) -> None:
        weights = [const_array(n.inputs[1]) for n in siblings]
        biases = [const_array(_bias(n)) if _bias(n) is not None else np.zeros(w.shape[0], w.dtype)
                  for n, w in zip(siblings, weights)]
        first = siblings[0]
        padding = _padding(first, x)
        attributes = {"kernel_shape": list(weights[0].shape[2:]), "strides": _ints(first, "strides", weights[0]),
                      "dilations": _ints(first, "dilations", weights[0]),
                      "pads": list(padding) if isinstance(padding, tuple) else None,
                      "auto_pad": padding if isinstance(padding, str) else None,
                      "activation": attr(first, "activation", "") if first.domain == WORKBENCH_DOMAIN else "",
                      "activation_params": attr(first, "activation_params")}
        # named after the original convolutions ("3a/1x1+3x3_reduce+5x5_reduce"), not their fused names
        base, version = joined_name([sources_of(n)[0] for n in siblings]), self.model.ir_version
        w = add_initializer(graph, f"{base}.weight", np.concatenate(weights, axis=0), version)
        b = add_initializer(graph, f"{base}.bias", np.concatenate(biases, axis=0).astype(weights[0].dtype), version)
        old_params = [v for n in siblings for v in n.inputs[1:3] if v is not None]
        conv = fused_node("FusedConv", [x, w, b], attributes, siblings, graph, name=base)
        conv.outputs[0].name = unique_value_name(graph, joined_name([n.outputs[0].name for n in siblings]))
        channels = [int(a.shape[0]) for a in weights]
        split = fused_node("SplitView", [conv.outputs[0]], {"axis": 1, "split": channels}, siblings, graph,
                           num_outputs=len(siblings), name=f"{conv.name}/split")
        replace_nodes_and_values(graph, first, siblings, [conv, split],
                                 [n.outputs[0] for n in siblings], list(split.outputs))
        drop_unread_initializers(graph, old_params, version)
        self.record([conv, split], siblings,
                    f"{len(siblings)} convs read {x.name!r}: {'+'.join(map(str, channels))} = {sum(channels)} "
                    f"output channels in one conv, split into views")


def _is_conv(node: ir.Node) -> bool:
    return (node.op_type == "Conv" and node.domain in STANDARD_DOMAINS) or \
        (node.op_type == "FusedConv" and node.domain == WORKBENCH_DOMAIN)


def _bias(node: ir.Node) -> ir.Value | None:
    return node.inputs[2] if len(node.inputs) > 2 else None


def _ineligible(node: ir.Node) -> str | None:
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        return "it adds a residual"
    if attr(node, "group", 1) != 1:
        return f"it is a grouped convolution (group={attr(node, 'group')})"
    weight = const_array(node.inputs[1])
    if weight is None:
        return "its weight is not a constant"
    if _bias(node) is not None and const_array(_bias(node)) is None:
        return "its bias is not a constant"
    if node.outputs[0].dtype is not None and ir.DataType.from_numpy(weight.dtype) != node.outputs[0].dtype:
        return "its weight dtype differs from its output dtype"
    return None


def _signature(node: ir.Node, x: ir.Value) -> tuple:
    weight = const_array(node.inputs[1])
    fused = node.domain == WORKBENCH_DOMAIN
    return (tuple(weight.shape[1:]), str(weight.dtype), tuple(_ints(node, "strides", weight)),
            tuple(_ints(node, "dilations", weight)), _padding(node, x),
            attr(node, "activation", "") if fused else "", tuple(attr(node, "activation_params", ()) or ()) if fused else ())


def _ints(node: ir.Node, name: str, weight: np.ndarray) -> list[int]:
    return [int(v) for v in attr(node, name, None) or [1] * (weight.ndim - 2)]


def _padding(node: ir.Node, x: ir.Value) -> tuple[int, ...] | str:
    """Explicit pads (begins then ends), or the auto_pad string where the input shape is unknown."""
    weight = const_array(node.inputs[1])
    spatial = weight.ndim - 2
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return (0,) * (2 * spatial)
    if auto_pad in ("NOTSET", ""):
        return tuple(int(p) for p in attr(node, "pads", None) or [0] * (2 * spatial))
    dims = list(x.shape)[2:] if x.shape is not None else []
    if len(dims) != spatial or not all(isinstance(d, int) for d in dims):
        return auto_pad
    strides, dilations = _ints(node, "strides", weight), _ints(node, "dilations", weight)
    begins, ends = [], []
    for size, k, s, d in zip(dims, weight.shape[2:], strides, dilations):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return tuple(begins + ends)
