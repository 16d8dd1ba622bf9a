"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["FuseLayerNormPass"]


class FuseLayerNormPass(GraphPass):
    name = "fuse_layernorm"
    level = 2

    def apply(self, graph):
        return 0
