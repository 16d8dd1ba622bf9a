"""(stub: to be written)"""
from workbench.passes.base import GraphPass

__all__ = ["FoldBatchNormPass"]


class FoldBatchNormPass(GraphPass):
    name = "fold_batchnorm"
    level = 1

    def apply(self, graph):
        return 0
