"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["EliminateConcatPass"]


class EliminateConcatPass(GraphPass):
    name = "eliminate_concat"
    level = 2

    def apply(self, graph):
        return 0
