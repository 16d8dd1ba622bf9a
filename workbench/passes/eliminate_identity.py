"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["EliminateIdentityPass"]


class EliminateIdentityPass(GraphPass):
    name = "eliminate_identity"
    level = 1

    def apply(self, graph):
        return 0
