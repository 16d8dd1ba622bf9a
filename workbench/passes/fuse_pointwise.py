"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["FusePointwisePass"]


class FusePointwisePass(GraphPass):
    name = "fuse_pointwise"
    level = 2

    def apply(self, graph):
        return 0
