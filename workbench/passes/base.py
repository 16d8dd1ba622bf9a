"""What every graph pass shares: the onnx_ir pass contract, the record of what it did, and the
pattern / check / rewrite loop of fusion rules.

A pass subclasses `GraphPass` (an onnx_ir `InPlacePass`) and implements `apply(graph) -> int`
(how many rewrites). A fusion subclasses `FusionPass` and writes three small methods:
`pattern(node)` returns a `Match` anchored at `node` or None; `check(match)` returns None or the
reason it must not fuse (shown in the report as "not fused because ..."); `rewrite(match)` returns
the new nodes and the values that replace `match.outputs`. The base refuses partial matches (an
intermediate value read outside the match) so a graph is never half-rewritten, and after each
rewrite drops the initializers the removed nodes read that nothing reads any more (the Clip
bounds of a fused Relu6, the BatchNorm statistics of a folded BN), so a pass leaves no orphans.
Graph-editing helpers for passes live in `workbench.passes.edit`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Sequence

import onnx_ir as ir
from onnx_ir.convenience import replace_nodes_and_values

from workbench.passes.edit import STANDARD_DOMAINS, drop_unread_initializers, sources_of

__all__ = ["GraphPass", "FusionPass", "Match", "Rewrite", "Miss", "sweep"]
log = logging.getLogger(__name__)


@dataclasses.dataclass
class Rewrite:
    pass_name: str
    new_nodes: list[str]
    new_ops: list[str]
    replaced: list[str]          # original node names (fused sources expanded)
    replaced_ops: list[str]
    detail: str = ""


@dataclasses.dataclass
class Miss:
    pass_name: str
    node: str
    reason: str


@dataclasses.dataclass
class Match:
    nodes: list[ir.Node]                          # every node the rewrite removes
    outputs: list[ir.Value]                       # values read outside the match, replaced in order
    captures: dict[str, Any] = dataclasses.field(default_factory=dict)


class GraphPass(ir.passes.InPlacePass):
    name: ClassVar[str] = ""
    level: ClassVar[int] = 2          # 1: basic cleanups, 2: fusions

    def __init__(self):
        super().__init__()
        self.rewrites: list[Rewrite] = []
        self.misses: list[Miss] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.model = model
        count = self.apply(model.graph)
        if count:
            model.graph.sort()
        return ir.passes.PassResult(model, modified=count > 0)

    def apply(self, graph: ir.Graph) -> int:
        raise NotImplementedError

    def record(self, new_nodes: Sequence[ir.Node], replaced: Sequence[ir.Node], detail: str = "") -> None:
        self.rewrites.append(Rewrite(self.name, [n.name for n in new_nodes], [_op(n) for n in new_nodes],
                                     [s for n in replaced for s in sources_of(n)], [_op(n) for n in replaced],
                                     detail))

    def why_not(self, node: ir.Node, reason: str) -> None:
        self.misses.append(Miss(self.name, node.name or node.op_type, reason))


class FusionPass(GraphPass):
    def pattern(self, node: ir.Node) -> Match | None:
        raise NotImplementedError

    def check(self, match: Match) -> str | None:
        return None

    def rewrite(self, match: Match) -> tuple[list[ir.Node], list[ir.Value]]:
        raise NotImplementedError

    def apply(self, graph: ir.Graph) -> int:
        count = 0
        for node in sweep(graph):
            match = self.pattern(node)
            if match is None:
                continue
            reason = _escapes(match, graph) or self.check(match)
            if reason:
                self.why_not(node, reason)
                continue
            new_nodes, new_values = self.rewrite(match)
            read = [v for n in match.nodes for v in n.inputs]
            last = max(match.nodes, key=_position(graph))
            replace_nodes_and_values(graph, last, match.nodes, new_nodes, match.outputs, new_values)
            drop_unread_initializers(graph, read, self.model.ir_version)     # constants the rewrite absorbed
            self.record(new_nodes, match.nodes)
            count += 1
        return count


def sweep(graph: ir.Graph, domains: Sequence[str] | None = None):
    """The graph's nodes in order, skipping those an earlier rewrite of the same sweep removed
    (and, given `domains`, those of other domains)."""
    for node in list(graph):
        if node.graph is graph and (domains is None or node.domain in domains):
            yield node


def _escapes(match: Match, graph: ir.Graph) -> str | None:
    """Why the match is partial: an intermediate value is used outside it (or is a graph output)."""
    inside = {id(n) for n in match.nodes}
    kept = {id(v) for v in match.outputs}
    for node in match.nodes:
        for value in node.outputs:
            if id(value) in kept:
                continue
            if value.is_graph_output():
                return f"{value.name!r} is a graph output"
            outside = [u.node.name for u in value.uses() if id(u.node) not in inside]
            if outside:
                return f"{value.name!r} is also read by {outside}"
    return None


def _position(graph: ir.Graph):
    order = {id(n): i for i, n in enumerate(graph)}
    return lambda node: order[id(node)]


def _op(node: ir.Node) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}::{node.op_type}"
