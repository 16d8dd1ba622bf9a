"""What every graph pass shares: the onnx_ir pass contract, the record of what it did, and the
pattern / check / rewrite loop of fusion rules.

A pass subclasses `GraphPass` (an onnx_ir `InPlacePass`) and implements `apply(graph) -> int`
(how many rewrites). A fusion subclasses `FusionPass` and writes three small methods:
`pattern(node)` returns a `Match` anchored at `node` or None; `check(match)` returns None or the
reason it must not fuse (shown in the report as "not fused because ..."); `rewrite(match)` returns
the new nodes and the values that replace `match.outputs`. The base refuses partial matches (an
intermediate value read outside the match) so a graph is never half-rewritten.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, ClassVar, Iterable, Sequence

import onnx_ir as ir
from onnx_ir.convenience import convert_attributes, replace_nodes_and_values

from workbench.ir import SOURCE_NODES_KEY, source_nodes_of
from workbench.ir.fused import OPSET_VERSION, WORKBENCH_DOMAIN

__all__ = ["GraphPass", "FusionPass", "Match", "Rewrite", "Miss", "sources_of", "fused_node",
           "only_consumer", "const_array", "attr"]
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
        for node in list(graph):
            if node.graph is not graph:            # removed by an earlier rewrite in this sweep
                continue
            match = self.pattern(node)
            if match is None:
                continue
            reason = _escapes(match, graph) or self.check(match)
            if reason:
                self.why_not(node, reason)
                continue
            new_nodes, new_values = self.rewrite(match)
            last = max(match.nodes, key=_position(graph))
            replace_nodes_and_values(graph, last, match.nodes, new_nodes, match.outputs, new_values)
            self.record(new_nodes, match.nodes)
            count += 1
        return count


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
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


sources_of = source_nodes_of   # the short name reads well inside passes


def fused_node(op_type: str, inputs: Iterable[ir.Value | None], attributes: dict[str, Any],
               replaced: Sequence[ir.Node], graph: ir.Graph, *, num_outputs: int = 1,
               domain: str = WORKBENCH_DOMAIN, name: str | None = None) -> ir.Node:
    """A new node that replaces `replaced`; workbench-domain nodes record their `source_nodes`."""
    attributes = {k: v for k, v in attributes.items() if v is not None}
    sources = list(dict.fromkeys(s for n in replaced for s in sources_of(n)))
    metadata = {}
    if domain == WORKBENCH_DOMAIN:
        attributes["source_nodes"] = sources
        graph.opset_imports.setdefault(WORKBENCH_DOMAIN, OPSET_VERSION)
    else:                      # standard ops take no extra attributes: keep the trace in metadata
        metadata[SOURCE_NODES_KEY] = ",".join(sources)
    base = name or _joined_name([n.name or n.op_type for n in replaced])
    return ir.Node(domain, op_type, list(inputs), convert_attributes(attributes), num_outputs=num_outputs,
                   name=_unique_name(graph, base), metadata_props=metadata)


def _joined_name(names: list[str]) -> str:
    """"inception_3a/1x1" + "inception_3a/relu_1x1" -> "inception_3a/1x1+relu_1x1"."""
    if len(names) == 1:
        return names[0]
    cut = max(names[0].rfind(sep, 0, len(os.path.commonprefix(names)) + 1) for sep in "/.") + 1
    tail = [n[cut:] for n in names[1:]]
    return "+".join([names[0]] + (tail if len(names) <= 4 else tail[:2] + [f"{len(names) - 3} more"]))


def _unique_name(graph: ir.Graph, base: str) -> str:
    taken = {n.name for n in graph}
    candidate, k = base, 1
    while candidate in taken:
        k += 1
        candidate = f"{base}_{k}"
    return candidate


def only_consumer(value: ir.Value) -> ir.Node | None:
    """The single node reading `value`, or None (several readers, none, or a graph output)."""
    users = {id(u.node): u.node for u in value.uses()}
    if len(users) != 1 or value.is_graph_output():
        return None
    return next(iter(users.values()))


def const_array(value: ir.Value | None):
    """The numpy value of a constant (initializer or Constant output), else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
        return producer.attributes["value"].value.numpy()
    return None


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    attribute = node.attributes.get(name)
    return default if attribute is None else attribute.value
