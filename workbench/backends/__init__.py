"""Backends by name. Each lives in its own folder and exposes one Backend class."""
from __future__ import annotations

import functools
from typing import Sequence

from workbench.errors import BuildError

__all__ = ["get_backend", "BACKENDS", "tactic_sources", "cuda_available"]

BACKENDS = ("cpu", "cuda")


def get_backend(name: str, sources: Sequence[str] | None = None):
    """The backend called `name`, restricted to the tactic `sources` given (None = all of them)."""
    if name not in BACKENDS:
        raise BuildError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    if sources is not None:
        unknown = sorted(set(sources) - set(_all_sources(name)))
        if unknown:
            raise BuildError(f"tactic_sources {unknown} are not known to backend {name!r}; "
                             f"available here: {tactic_sources(name)}")
    return _backend(name, None if sources is None else tuple(sources))


@functools.lru_cache(maxsize=None)
def _backend(name: str, sources: tuple[str, ...] | None):
    if name == "cpu":
        from workbench.backends.cpu import CpuBackend
        return CpuBackend(sources)
    from workbench.backends.cuda import CudaBackend
    return CudaBackend(sources)


def _all_sources(name: str) -> tuple[str, ...]:
    if name == "cpu":
        from workbench.backends.cpu import SOURCES
        return SOURCES
    from workbench.backends.cuda.tactic import SOURCES
    return SOURCES


def tactic_sources(name: str) -> list[str]:
    """The tactic sources backend `name` can use on this machine (what BuilderConfig.tactic_sources takes)."""
    if name == "cuda" and not cuda_available():
        return []
    return list(get_backend(name).sources)


def cuda_available() -> bool:
    from workbench.backends.cuda.device import cuda_available as available
    return available()
