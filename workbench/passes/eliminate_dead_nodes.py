"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["EliminateDeadNodesPass"]


class EliminateDeadNodesPass(GraphPass):
    name = "eliminate_dead_nodes"
    level = 1

    def apply(self, graph):
        return 0
