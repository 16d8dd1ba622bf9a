"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["FoldConstantsPass"]


class FoldConstantsPass(GraphPass):
    name = "fold_constants"
    level = 1

    def apply(self, graph):
        return 0
