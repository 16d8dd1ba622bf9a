"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["FuseGeluPass"]


class FuseGeluPass(GraphPass):
    name = "fuse_gelu"
    level = 2

    def apply(self, graph):
        return 0
