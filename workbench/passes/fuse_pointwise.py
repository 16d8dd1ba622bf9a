"""Fuse runs of elementwise ops into one `workbench::PointwiseChain` (one generated kernel).

    t0 = f_0(in.., ..);  t1 = f_1(t0, in..);  ...;  Y = f_n(..)
        ==>  PointwiseChain(in0, in1, ..., program=[{"op": f_0, "inputs": ["in0", ...]}, ...])

Grouping, one sweep from the graph's end: a pointwise node joins the group of its readers when
all of them are in one group (and its output is no graph output); otherwise it starts a group.
So every value a group computes is read only inside it, except the last node's output, and a
group is always a contiguous, cycle-free piece of the graph with one output whose shape is the
broadcast of its inputs (elementwise ops never reduce). Groups of two or more nodes are fused.
Only float-valued ops are grouped (integer shape arithmetic stays visible to shape inference);
a Cast into float may start a chain. Softmax, reductions and fused ops other than FusedGelu are no
pointwise ops; this pass runs after the Conv/GEMM epilogue fusions took what they want.
"""
from __future__ import annotations

import json
import logging

import onnx_ir as ir

from workbench.ir import node_attributes
from workbench.passes.base import FusionPass, Match
from workbench.passes.edit import STANDARD_DOMAINS, attr, const_array, fused_node

__all__ = ["FusePointwisePass", "POINTWISE_OPS"]
log = logging.getLogger(__name__)

POINTWISE_OPS = {
    "": {"Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs", "Erf", "Reciprocal", "Clip",
         "LeakyRelu", "HardSwish", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Cast"},
    "workbench": {"FusedGelu"},
}
_FLOATS = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE}


class FusePointwisePass(FusionPass):
    name = "fuse_pointwise"
    level = 2

    def apply(self, graph: ir.Graph) -> int:
        self.groups = _groups(graph, self)
        return super().apply(graph)

    def pattern(self, node: ir.Node) -> Match | None:
        members = self.groups.get(id(node))
        if members is None or members[-1] is not node or len(members) < 2:
            return None
        return Match(list(members), [node.outputs[0]])

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        inputs, program, names = [], [], {}
        for index, node in enumerate(match.nodes):
            refs = []
            for value in node.inputs:
                if value is None:
                    refs.append("")
                elif id(value) in names:
                    refs.append(names[id(value)])
                else:
                    names[id(value)] = f"in{len(inputs)}"
                    refs.append(names[id(value)])
                    inputs.append(value)
            names[id(node.outputs[0])] = f"t{index}"
            attrs = {k: v for k, v in node_attributes(node).items() if k != "source_nodes"}
            program.append({"op": node.op_type, "domain": _domain(node), "inputs": refs, "attrs": attrs})
        text = json.dumps(program, separators=(",", ":"))
        node = fused_node("PointwiseChain", inputs, {"program": text}, match.nodes, match.nodes[0].graph)
        return [node], [node.outputs[0]]


def _domain(node: ir.Node) -> str:
    return "" if node.domain in STANDARD_DOMAINS else node.domain


def _pointwise(node: ir.Node) -> bool:
    if node.op_type not in POINTWISE_OPS.get(_domain(node), ()) or len(node.outputs) != 1:
        return False
    dtype = node.outputs[0].dtype
    if dtype is None and node.op_type != "Cast" and node.inputs and node.inputs[0] is not None:
        dtype = node.inputs[0].dtype          # a node fused earlier in this run: no inferred type yet
    if dtype not in _FLOATS:
        return False
    if node.op_type == "Clip":                # bounds must be constants, given as inputs (opset >= 11)
        bounds = [v for v in node.inputs[1:] if v is not None]
        return attr(node, "min") is None and attr(node, "max") is None and \
            all(const_array(v) is not None for v in bounds)
    return True


def _groups(graph: ir.Graph, owner: FusionPass) -> dict[int, list[ir.Node]]:
    """id(node) -> its group's members in graph order, the group's output node last."""
    root: dict[int, ir.Node] = {}
    for node in reversed(list(graph)):
        if not _pointwise(node):
            continue
        value = node.outputs[0]
        readers = {id(u.node): u.node for u in value.uses()}
        roots = {id(root[r]) for r in readers if r in root}
        if readers and not value.is_graph_output() and len(roots) == 1 and all(r in root for r in readers):
            root[id(node)] = root[next(iter(readers))]
            continue
        root[id(node)] = node
        if roots:                              # next to a chain, but its output is read outside it
            named = sorted(n.name for n in readers.values()) + ["a graph output"] * value.is_graph_output()
            owner.why_not(node, f"{value.name!r} is read outside one chain ({', '.join(named)}), "
                                "so it ends its own chain")
    groups: dict[int, list[ir.Node]] = {}
    for node in graph:
        if id(node) in root:
            groups.setdefault(id(root[id(node)]), []).append(node)
    return {id(n): members for members in groups.values() for n in members}
