"""`BuilderConfig(sparsity="force")` in `wb.build`: prune to 2:4 before anything else (int8
calibrates the pruned model), build as "enable", and report what pruning cost.

    engine = wb.build(graph, wb.BuilderConfig(sparsity="force"), eval_fn=top1)
    engine.meta["sparsity"]   # {"mode": "force", "pruned": [...], "skipped": [{tensor, node, reason}],
                              #  "accuracy": {"dense": 99.7, "pruned": 98.9, "change": -0.8}}
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

from workbench.builder import BuilderConfig
from workbench.ir import Graph
from workbench.quant.sparsity_mode import prepare_sparsity

__all__ = ["build_pruned"]
log = logging.getLogger(__name__)


def build_pruned(graph: Graph, config: BuilderConfig, eval_fn: Callable[[Any], float] | None = None):
    from workbench.runtime.engine import build          # engine.py imports this module lazily
    pruned, report = prepare_sparsity(graph, "force")
    engine = build(pruned, dataclasses.replace(config, sparsity="enable"))
    if eval_fn is not None:
        dense = float(eval_fn(build(graph, dataclasses.replace(config, sparsity="disable"))))
        after = float(eval_fn(engine))
        report["accuracy"] = {"dense": dense, "pruned": after, "change": after - dense}
        log.info("sparsity='force': metric %.4f dense -> %.4f pruned (%+.4f)", dense, after, after - dense)
    engine.meta["sparsity"] = report
    return engine
