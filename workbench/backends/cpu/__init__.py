"""The CPU backend: numpy implementations of every supported op. It is also the correctness
oracle every other backend's tactics are compared with."""
from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

from workbench.backends.base import QUANTIZED_GRIDS, Layer, PerfCounterTimer, Tactic
from workbench.backends.cpu import ops as _ops  # noqa: F401  (registers the kernels)
from workbench.backends.cpu.registry import KERNELS, lookup
from workbench.backends.cpu.tactics import NumpyTactic, SgemmTactic

__all__ = ["CpuBackend", "declared_ops", "SOURCES"]

SOURCES = ("numpy", "blas")     # tactic sources: the float64-accumulating oracle, float32 BLAS


def declared_ops(domain: str = "") -> list[str]:
    """ONNX op types of `domain` the CPU backend declares supported (and is tested on)."""
    return sorted(op for d, op in KERNELS if d == domain)


class CpuBackend:
    name = "cpu"
    version = "2"
    preferred_layout = ""
    writes_into_outputs = False          # numpy kernels return their outputs
    timing_repeats = {1: (0, 1), 2: (1, 3), 3: (2, 10)}    # level -> (warm-ups, runs): host runs are slow, steady

    def __init__(self, sources=None):
        self.sources = list(SOURCES if sources is None else sources)
        every = [NumpyTactic(), SgemmTactic()]
        self._tactics: list[Tactic] = [t for t in every if t.name.split(".")[0] in self.sources]

    @property
    def device(self) -> str:
        return f"cpu:{platform.machine()}:{platform.processor() or 'unknown'}:{os.cpu_count()}cores"

    def supports(self, layer: Layer) -> bool:
        return lookup(layer.domain, layer.op) is not None

    def tactics(self, layer: Layer) -> list[Tactic]:
        return [t for t in self._tactics if t.supports(layer, layer.precision)]

    def tactic(self, name: str, layer: Layer) -> Tactic:
        for t in self._tactics:
            if t.name == name:
                return t
        raise KeyError(f"CPU backend has no tactic {name!r} (layer {layer.name!r})")

    # moving data: the host is the device here
    def upload(self, array: np.ndarray) -> np.ndarray:
        return array

    def download(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def empty(self, shape, dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def random(self, shape, dtype, seed: int) -> np.ndarray:
        """Nonzero test data for the autotuner: normal floats, int8/uint8 over their grid, 0/1 other
        integers and booleans."""
        rng = np.random.default_rng(seed)
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            return (rng.standard_normal(shape, dtype=np.float32) * 0.5 + 0.1).astype(dtype)
        if dtype.name in QUANTIZED_GRIDS:
            return rng.integers(*QUANTIZED_GRIDS[dtype.name], shape).astype(dtype)
        return rng.integers(0, 2, shape).astype(dtype)

    def synchronize(self) -> None:
        pass

    def stream(self) -> None:
        return None

    def allocate(self, nbytes: int) -> np.ndarray:
        return np.empty(nbytes, dtype=np.uint8)

    def timer(self) -> PerfCounterTimer:
        return PerfCounterTimer()

    def measure(self, run, stream, warmups: int, repeats: int, budget_s: float = 0.5) -> float:
        """Median milliseconds of `run()` by wall clock, stopping after three samples once
        `budget_s` has passed: a large layer on the host is slow and its time steady."""
        for _ in range(warmups):
            run()
        samples, started = [], time.perf_counter()
        for _ in range(repeats):
            with self.timer() as timer:
                run()
            samples.append(timer.elapsed_ms)
            if len(samples) >= 3 and time.perf_counter() - started > budget_s:
                break
        return statistics.median(samples)
