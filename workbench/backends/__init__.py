"""Backends by name. Each lives in its own folder and exposes one Backend class."""
from __future__ import annotations

from workbench.errors import BuildError

__all__ = ["get_backend", "BACKENDS"]

BACKENDS = ("cpu",)


def get_backend(name: str):
    if name == "cpu":
        from workbench.backends.cpu import CpuBackend
        return CpuBackend()
    raise BuildError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
