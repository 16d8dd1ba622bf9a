"""Remove nodes whose results nobody reads, and initializers no node reads.

A node is live when one of its outputs is a graph output or is read by a live node; walking the
(topologically sorted) graph backwards decides that in one sweep, so whole dead chains go at
once. A value read from inside a subgraph (If/Loop bodies) counts as read. Initializers that no
node reads and that are not graph outputs are dropped; models before IR version 4 also list
every initializer as a graph input, and that entry goes with it.
"""
from __future__ import annotations

import logging
import onnx_ir as ir

from workbench.passes.base import GraphPass, Rewrite
from workbench.passes.edit import drop_unread_initializers

__all__ = ["EliminateDeadNodesPass"]
log = logging.getLogger(__name__)


class EliminateDeadNodesPass(GraphPass):
    name = "eliminate_dead_nodes"
    level = 1

    def apply(self, graph: ir.Graph) -> int:
        live: set[int] = set()
        dead: list[ir.Node] = []
        for node in reversed(list(graph)):
            if any(_read(value, graph, live) for value in node.outputs):
                live.add(id(node))
            else:
                dead.append(node)
        dead.reverse()
        if dead:
            graph.remove(dead, safe=True)
        for node in dead:
            self.record([], [node], "no output is read")
        dropped = drop_unread_initializers(graph, list(graph.initializers.values()), self.model.ir_version)
        if dropped:
            self.rewrites.append(Rewrite(self.name, [], [], dropped, ["initializer"] * len(dropped),
                                         f"{len(dropped)} unread initializers dropped"))
        return len(dead) + bool(dropped)


def _read(value: ir.Value | None, graph: ir.Graph, live: set[int]) -> bool:
    if value is None:
        return False
    if value.is_graph_output():
        return True
    return any(use.node.graph is not graph or id(use.node) in live for use in value.uses())
