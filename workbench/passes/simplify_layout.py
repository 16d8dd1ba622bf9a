"""Collapse chains of layout ops into one op, or none.

    Transpose(Transpose(x, p1), p2) = Transpose(x, q),  q[i] = p1[p2[i]]   (dropped if q is the identity)
    Transpose(x, identity perm)     = x
    Reshape(Reshape(x, s1), s2)     = Reshape(x, s2)

Reshape keeps the row-major element order, so only the last target matters; -1 still resolves
to the same size (the element count is unchanged). A 0 in s2 copies a dim of the *first*
Reshape's output, which x need not share: it is replaced by that dim when it is static, and the
chain is left alone otherwise (unless s2's `allowzero` makes 0 a literal size). A collapsed
Reshape that gives back x's own static shape is dropped. The first op of a chain stays if
something else reads its output.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
from onnx_ir.convenience import replace_nodes_and_values

from workbench.passes.base import GraphPass, sweep
from workbench.passes.edit import (STANDARD_DOMAINS, add_initializer, attr, bypass, const_array, fused_node,
                                    producer_op, resolve_reshape, static_shape)

__all__ = ["SimplifyLayoutPass"]
log = logging.getLogger(__name__)


class SimplifyLayoutPass(GraphPass):
    name = "simplify_layout"
    level = 2

    def apply(self, graph: ir.Graph) -> int:
        count = 0
        for node in sweep(graph, STANDARD_DOMAINS):
            if node.op_type == "Transpose":
                count += self._transpose(graph, node)
            elif node.op_type == "Reshape":
                count += self._reshape(graph, node)
        return count

    def _transpose(self, graph: ir.Graph, node: ir.Node) -> int:
        perm = _perm(node)
        if perm is None:
            return 0
        first = _producer(node, "Transpose")
        if first is None:
            if perm != list(range(len(perm))):
                return 0
            return self._replace(graph, [node], node.inputs[0], None, "identity perm")
        p1 = _perm(first)
        if p1 is None or len(p1) != len(perm):
            return 0
        composed = [p1[i] for i in perm]
        attributes = None if composed == list(range(len(composed))) else {"perm": composed}
        return self._replace(graph, [first, node], first.inputs[0], attributes, f"perm {composed}")

    def _reshape(self, graph: ir.Graph, node: ir.Node) -> int:
        first = _producer(node, "Reshape")
        if first is None:
            return 0
        target = const_array(node.inputs[1])
        if target is None:
            self.why_not(node, "its target shape is not constant")
            return 0
        target = [int(d) for d in np.asarray(target).reshape(-1)]
        allowzero = bool(attr(node, "allowzero", 0))
        copied = [i for i, d in enumerate(target) if d == 0] if not allowzero else []
        if copied:
            dims = first.outputs[0].shape
            if dims is None or any(i >= len(dims) or not isinstance(dims[i], int) or dims[i] == 0 for i in copied):
                self.why_not(node, f"target {target} copies dims of {first.name!r}'s output that are not static")
                return 0
            target = [int(dims[i]) if i in copied else d for i, d in enumerate(target)]
        x = first.inputs[0]
        shape = static_shape(x)
        if shape is not None and resolve_reshape(shape, target, allowzero) == shape:
            return self._replace(graph, [first, node], x, None, f"shape {target}")
        shape_value = node.inputs[1]
        if copied:
            shape_value = add_initializer(graph, f"{node.name or 'reshape'}.shape", np.array(target, np.int64),
                                          self.model.ir_version)
        attributes = {"allowzero": int(allowzero)} if "allowzero" in node.attributes else {}
        return self._replace(graph, [first, node], x, attributes, f"shape {target}", shape_value)

    def _replace(self, graph: ir.Graph, chain: list[ir.Node], source: ir.Value, attributes: dict | None,
                 detail: str, shape: ir.Value | None = None) -> int:
        """Replace the last node of `chain` with one op reading `source` (or with `source` itself when
        `attributes` is None); earlier nodes of the chain go when nothing else reads them."""
        last = chain[-1]
        if attributes is None:
            refused = bypass(graph, last, source)
            if refused:
                self.why_not(last, refused)
                return 0
            new_nodes, detail = [], f"{detail}: a no-op"
        else:
            inputs = [source] if shape is None else [source, shape]
            node = fused_node(last.op_type, inputs, attributes, chain, graph, domain="")
            replace_nodes_and_values(graph, last, [last], [node], [last.outputs[0]], [node.outputs[0]])
            new_nodes = [node]
        replaced = [n for n in chain[:-1] if not n.outputs[0].uses() and not n.outputs[0].is_graph_output()]
        if replaced:
            graph.remove(replaced, safe=True)
        self.record(new_nodes, replaced + [last], detail)
        return 1


def _producer(node: ir.Node, op_type: str) -> ir.Node | None:
    """The standard `op_type` node computing `node`'s first input, else None."""
    return producer_op(node.inputs[0] if node.inputs else None, op_type)


def _perm(node: ir.Node) -> list[int] | None:
    perm = attr(node, "perm")
    if perm is not None:
        return [int(p) for p in perm]
    shape = node.inputs[0].shape if node.inputs[0] is not None else None
    return None if shape is None else list(range(len(shape)))[::-1]
