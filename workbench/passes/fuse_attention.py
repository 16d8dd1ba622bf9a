"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["FuseAttentionPass"]


class FuseAttentionPass(GraphPass):
    name = "fuse_attention"
    level = 2

    def apply(self, graph):
        return 0
