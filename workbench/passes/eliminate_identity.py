"""Remove nodes that pass their input through unchanged.

    Identity(x)                       = x
    Dropout(x) in inference           = x     (no training_mode input, or a constant false; mask unread)
    Reshape(x, s), s resolves to x.shape        = x     (static x shape, constant s)
    Cast(x, to=x.dtype)                         = x
    Expand(x, s), broadcast(x.shape, s) = x.shape = x   (static x shape, constant s)

Every reader of the node's output reads `x` instead. A graph output keeps its name: `x` is
renamed to it, unless `x` is itself a graph input, graph output or initializer (a name that
must not change), in which case the node stays.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from workbench.passes.base import GraphPass, sweep
from workbench.passes.edit import STANDARD_DOMAINS, attr, bypass, const_array, resolve_reshape, static_shape

__all__ = ["EliminateIdentityPass", "noop_reason"]
log = logging.getLogger(__name__)


class EliminateIdentityPass(GraphPass):
    name = "eliminate_identity"
    level = 1

    def apply(self, graph: ir.Graph) -> int:
        count = 0
        for node in sweep(graph, STANDARD_DOMAINS):
            detail = noop_reason(node, self._opset(graph))
            if detail is None:
                if node.op_type == "Dropout":
                    self.why_not(node, "Dropout may be in training mode, or its mask is read")
                continue
            refused = bypass(graph, node)
            if refused:
                self.why_not(node, refused)
                continue
            self.record([], [node], detail)
            count += 1
        return count

    def _opset(self, graph: ir.Graph) -> int:
        imports = graph.opset_imports
        return imports.get("", imports.get("ai.onnx", 1))


def noop_reason(node: ir.Node, opset: int = 17) -> str | None:
    """How `node` passes its first input through unchanged ("Identity", ...), or None."""
    op = node.op_type
    if op == "Identity":
        return "Identity"
    if op == "Dropout":
        return _dropout(node, opset)
    if not node.inputs or node.inputs[0] is None:
        return None
    x = node.inputs[0]
    if op == "Cast":
        to = attr(node, "to")
        if x.dtype is not None and to is not None and ir.DataType(to) == x.dtype:
            return f"Cast to its input's dtype {x.dtype.name}"
        return None
    shape = static_shape(x)
    if op not in ("Reshape", "Expand") or shape is None or len(node.inputs) < 2:
        return None
    target = const_array(node.inputs[1])
    if target is None:
        return None
    target = [int(d) for d in np.asarray(target).reshape(-1)]
    if op == "Reshape" and resolve_reshape(shape, target, bool(attr(node, "allowzero", 0))) == shape:
        return f"Reshape to its input's shape {tuple(shape)}"
    if op == "Expand" and _broadcast(shape, target) == shape:
        return f"Expand to its input's shape {tuple(shape)}"
    return None


def _broadcast(shape: list[int], target: list[int]) -> list[int] | None:
    try:
        return list(np.broadcast_shapes(tuple(shape), tuple(target)))
    except ValueError:
        return None


def _dropout(node: ir.Node, opset: int) -> str | None:
    if len(node.outputs) > 1 and node.outputs[1] is not None and (node.outputs[1].uses()
                                                                   or node.outputs[1].is_graph_output()):
        return None                     # the mask is read
    training = node.inputs[2] if opset >= 12 and len(node.inputs) > 2 else None
    if training is not None:
        flag = const_array(training)
        if flag is None or bool(np.asarray(flag).reshape(-1)[0]):
            return None
    return "Dropout in inference"
