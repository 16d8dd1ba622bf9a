"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["MergeParallelConvsPass"]


class MergeParallelConvsPass(GraphPass):
    name = "merge_parallel_convs"
    level = 2

    def apply(self, graph):
        return 0
