"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["SimplifyLayoutPass"]


class SimplifyLayoutPass(GraphPass):
    name = "simplify_layout"
    level = 2

    def apply(self, graph):
        return 0
