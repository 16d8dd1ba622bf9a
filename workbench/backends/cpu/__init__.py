"""The CPU backend: numpy implementations of every supported op. It is also the correctness
oracle every other backend's tactics are compared with."""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer, PerfCounterTimer, Tactic
from workbench.backends.cpu import ops as _ops  # noqa: F401  (registers the kernels)
from workbench.backends.cpu.registry import KERNELS, lookup
from workbench.backends.cpu.tactics import NumpyTactic

__all__ = ["CpuBackend", "declared_ops"]


def declared_ops(domain: str = "") -> list[str]:
    """ONNX op types of `domain` the CPU backend declares supported (and is tested on)."""
    return sorted(op for d, op in KERNELS if d == domain)


class CpuBackend:
    name = "cpu"
    version = "1"

    def __init__(self):
        self._tactics: list[Tactic] = [NumpyTactic()]

    def supports(self, layer: Layer) -> bool:
        return lookup(layer.domain, layer.op) is not None

    def tactics(self, layer: Layer) -> list[Tactic]:
        return [t for t in self._tactics if t.supports(layer, layer.precision)]

    def tactic(self, name: str, layer: Layer) -> Tactic:
        for t in self._tactics:
            if t.name == name:
                return t
        raise KeyError(f"CPU backend has no tactic {name!r} (layer {layer.name!r})")

    def allocate(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, dtype=np.uint8)

    def timer(self) -> PerfCounterTimer:
        return PerfCounterTimer()
