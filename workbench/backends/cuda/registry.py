"""The CUDA backend's tactics, registered by the modules of `tactics/` at import time.

A tactic module calls `register(SomeTactic(...))` once per instance (one per tile configuration,
dtype or epilogue). Optional sources (cuDNN frontend, nvmath-python) register only when their
package imports, so `available_sources()` tells the user what this machine can use.
"""
from __future__ import annotations

from workbench.backends.cuda.tactic import SOURCES, CudaTactic

__all__ = ["TACTICS", "register", "available_sources"]

TACTICS: list[CudaTactic] = []


def register(tactic: CudaTactic) -> CudaTactic:
    if tactic.source not in SOURCES:
        raise ValueError(f"tactic {tactic.name!r}: unknown source {tactic.source!r}; sources are {SOURCES}")
    if any(t.name == tactic.name for t in TACTICS):
        raise ValueError(f"tactic {tactic.name!r} is registered twice")
    TACTICS.append(tactic)
    return tactic


def available_sources() -> list[str]:
    present = {t.source for t in TACTICS}
    return [s for s in SOURCES if s in present]
