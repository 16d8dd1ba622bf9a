"""`optimize`: run the graph passes in order and report what each did.

Level 0 runs nothing, level 1 the basic cleanups (identity/dead-node elimination, constant
folding, BatchNorm folding), level 2 everything. Each pass can be disabled by name.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable

from workbench.errors import UnknownPassError
from workbench.ir import Graph, load
from workbench.passes.base import GraphPass
from workbench.passes.report import FusionReport, PassSummary

__all__ = ["optimize", "PASS_ORDER", "pass_names"]
log = logging.getLogger(__name__)


def _pass_order() -> list[type[GraphPass]]:
    from workbench.passes import (eliminate_concat, eliminate_dead_nodes, eliminate_identity,
                                  fold_attention_transposes, fold_batchnorm, fold_constants, fuse_attention,
                                  fuse_conv_act, fuse_gelu, fuse_gemm_epilogue, fuse_layernorm, fuse_pointwise,
                                  merge_attention_projections, merge_parallel_convs, simplify_layout)
    return [eliminate_identity.EliminateIdentityPass, fold_constants.FoldConstantsPass,
            eliminate_dead_nodes.EliminateDeadNodesPass, fold_batchnorm.FoldBatchNormPass,
            simplify_layout.SimplifyLayoutPass, fuse_layernorm.FuseLayerNormPass, fuse_gelu.FuseGeluPass,
            fuse_attention.FuseAttentionPass,
            fold_attention_transposes.FoldAttentionTransposesPass, fuse_conv_act.FuseConvActivationPass,
            fuse_gemm_epilogue.FuseGemmEpiloguePass, merge_attention_projections.MergeAttentionProjectionsPass,
            merge_parallel_convs.MergeParallelConvsPass,
            fuse_pointwise.FusePointwisePass, eliminate_concat.EliminateConcatPass]


PASS_ORDER: list[type[GraphPass]] = []


def pass_names() -> list[str]:
    if not PASS_ORDER:
        PASS_ORDER.extend(_pass_order())
    return [p.name for p in PASS_ORDER]


def optimize(graph: Graph, level: int = 2, disable: Iterable[str] = (),
             only: Iterable[str] | None = None) -> tuple[Graph, FusionReport]:
    """Optimize a copy of `graph`; the input graph is left untouched.

    Args:
        graph: a loaded graph (`wb.load`).
        level: 0 none, 1 basic cleanups, 2 all passes.
        disable: names of passes to skip, e.g. ["merge_parallel_convs"].
        only: run just these passes (in pipeline order), e.g. to show one fusion step at a time.

    Example:
        >>> optimized, report = wb.optimize(graph, level=2, disable=["merge_parallel_convs"])
        >>> report.to_dataframe()[["pass", "new_node", "replaced_nodes"]]
    """
    names = pass_names()
    disable = set(disable or ())
    if only is not None:
        only = set(only)
        disable |= set(names) - only
    unknown = sorted((disable | set(only or ())) - set(names))
    if unknown:
        raise UnknownPassError(f"unknown pass name(s) {unknown}; valid names: {', '.join(names)}")
    if level not in (0, 1, 2):
        raise UnknownPassError(f"level must be 0, 1 or 2, got {level!r}")
    optimized = graph.copy()
    before = optimized.op_counts()
    passes, rewrites, misses = [], [], []
    for cls in PASS_ORDER:
        if cls.level > level or cls.name in disable:
            continue
        instance = cls()
        count_before = len(optimized.model.graph)
        started = time.perf_counter()
        instance(optimized.model)
        passes.append(PassSummary(cls.name, len(instance.rewrites), count_before, len(optimized.model.graph),
                                  round(time.perf_counter() - started, 4)))
        rewrites += instance.rewrites
        misses += instance.misses
        log.debug("%s: %d rewrites", cls.name, len(instance.rewrites))
    if rewrites:
        optimized = Graph(load(optimized.to_proto()).model, graph.source)   # re-infer shapes, re-check
    report = FusionReport(level, rewrites, misses, passes, before, optimized.op_counts())
    return optimized, report
