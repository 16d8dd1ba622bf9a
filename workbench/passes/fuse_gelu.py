"""Fuse GELU, as exporters spell it op by op, into one `workbench::FusedGelu`.

    erf form  (approximate="none"):  Y = X * 0.5 * (1 + Erf(X / sqrt(2)))
    tanh form (approximate="tanh"):  Y = 0.5 * X * (1 + Tanh(sqrt(2/pi) * (X + 0.044715 * X^3)))

Anchored at the Erf / Tanh. Accepted spellings of the head: X / 1.41421 or X * 0.70711;
X^3 as Pow(X, 3), (X*X)*X or X*(X*X). The tail (1 + e) meets X and 0.5 in any order:
(X * (1+e)) * 0.5,  (X * 0.5) * (1+e),  X * ((1+e) * 0.5). Every constant must be a scalar
within 1e-4 (relative) of its exact value; otherwise the report says which one is off.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import onnx_ir as ir

from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import STANDARD_DOMAINS, const_array, fused_node, producer_op, reader_op, split_constant

__all__ = ["FuseGeluPass"]
log = logging.getLogger(__name__)

_TOLERANCE = 1e-4


class FuseGeluPass(FusionPass):
    name = "fuse_gelu"
    level = 2

    def pattern(self, node: ir.Node) -> Match | None:
        if node.domain not in STANDARD_DOMAINS or node.op_type not in ("Erf", "Tanh"):
            return None
        head = _erf_head(node) if node.op_type == "Erf" else _tanh_head(node)
        if head is None:
            return None
        x, head_nodes, constants = head
        tail = _tail(node.outputs[0], x)
        if tail is None:
            return None
        tail_nodes, out, tail_constants = tail
        approximate = "none" if node.op_type == "Erf" else "tanh"
        return Match(head_nodes + [node] + tail_nodes, [out],
                     {"x": x, "approximate": approximate, "constants": constants + tail_constants})

    def check(self, match: Match) -> str | None:
        for label, array, want in match.captures["constants"]:
            if np.size(array) != 1:
                return f"{label} has shape {list(np.shape(array))}, not a scalar"
            got = float(np.asarray(array).reshape(-1)[0])
            if abs(got - want) > _TOLERANCE * abs(want):
                return f"{label} is {got:.6g}, expected {want:.6g}"
        if match.captures["x"].dtype not in (None, ir.DataType.FLOAT, ir.DataType.FLOAT16,
                                             ir.DataType.BFLOAT16, ir.DataType.DOUBLE):
            return f"input dtype {match.captures['x'].dtype} is not a float type"
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        graph = match.nodes[0].graph
        node = fused_node("FusedGelu", [match.captures["x"]], {"approximate": match.captures["approximate"]},
                          match.nodes, graph)
        return [node], [node.outputs[0]]


def _erf_head(erf: ir.Node):
    """X / sqrt(2) or X * (1/sqrt(2)) feeding the Erf."""
    scaled = producer_op(erf.inputs[0], "Div", "Mul")
    found = split_constant(scaled)
    if found is None:
        return None
    x, c = found
    if scaled.op_type == "Div":
        return x, [scaled], [("divisor of X", c, math.sqrt(2.0))]
    return x, [scaled], [("multiplier of X", c, 1 / math.sqrt(2.0))]


def _tanh_head(tanh: ir.Node):
    """sqrt(2/pi) * (X + 0.044715 * X^3) feeding the Tanh."""
    outer = producer_op(tanh.inputs[0], "Mul")
    found = split_constant(outer)
    inner = producer_op(found[0], "Add") if found else None
    if inner is None or len(inner.inputs) != 2:
        return None
    for x, cubic in (inner.inputs, inner.inputs[::-1]):
        scaled = split_constant(producer_op(cubic, "Mul"))
        cube = _cube(scaled[0], x) if scaled else None
        if cube is not None:
            cube_nodes, exponent = cube
            constants = [("sqrt(2/pi) factor", found[1], math.sqrt(2 / math.pi)),
                         ("cubic coefficient", scaled[1], 0.044715)]
            if exponent is not None:
                constants.append(("exponent of X", exponent, 3.0))
            return x, cube_nodes + [cubic.producer(), inner, outer], constants
    return None


def _cube(value: ir.Value, x: ir.Value):
    """(nodes, exponent or None) when `value` is Pow(x, c), (x*x)*x or x*(x*x)."""
    node = producer_op(value, "Pow", "Mul")
    if node is None or len(node.inputs) != 2:
        return None
    if node.op_type == "Pow":
        return ([node], const_array(node.inputs[1])) if node.inputs[0] is x and \
            const_array(node.inputs[1]) is not None else None
    a, b = node.inputs
    square = b if a is x else a if b is x else None
    inner = producer_op(square, "Mul")
    if inner is not None and inner.inputs[0] is x and inner.inputs[1] is x:
        return [inner, node], None
    return None


def _tail(e: ir.Value, x: ir.Value):
    """(nodes, output, constants) of (1 + e) meeting X and 0.5, in the accepted orders."""
    add = reader_op(e, "Add")
    found = split_constant(add) if add is not None and e in add.inputs else None
    if found is None or found[0] is not e:
        return None
    constants = [("added constant", found[1], 1.0)]
    one_plus = add.outputs[0]
    first = reader_op(one_plus, "Mul")
    if first is None or list(first.inputs).count(one_plus) != 1:
        return None
    other = first.inputs[1] if first.inputs[0] is one_plus else first.inputs[0]
    if other is x:                                    # (X * (1+e)) * 0.5
        last = reader_op(first.outputs[0], "Mul")
        half = split_constant(last)
        if half is None or half[0] is not first.outputs[0]:
            return None
        return [add, first, last], last.outputs[0], constants + [("half factor", half[1], 0.5)]
    if const_array(other) is not None:                # X * ((1+e) * 0.5)
        last = reader_op(first.outputs[0], "Mul")
        if last is None or x not in last.inputs or first.outputs[0] not in last.inputs:
            return None
        return [add, first, last], last.outputs[0], constants + [("half factor", const_array(other), 0.5)]
    half_x = producer_op(other, "Mul")                # (X * 0.5) * (1+e)
    half = split_constant(half_x)
    if half is None or half[0] is not x:
        return None
    return [half_x, add, first], first.outputs[0], constants + [("half factor", half[1], 0.5)]
