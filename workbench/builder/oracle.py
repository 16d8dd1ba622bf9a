"""The CPU oracle for one layer: what any tactic's output must agree with.

The autotuner checks every candidate tactic with `check_outputs` before it may be chosen, and the
gpu tests check every tactic the same way. Layers stored channels-last (layout "NHWC") are
compared by running the CPU kernel on the NCHW view of the same data.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from workbench.backends.base import QUANTIZED_GRIDS, Layer
from workbench.backends.cpu.tactics import NumpyTactic

__all__ = ["TOLERANCE", "tolerance", "rel_l2", "oracle_outputs", "check_outputs", "to_nchw", "to_nhwc"]

# relative L2 a tactic may differ from the oracle by, per layer precision (issue 4's acceptance)
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 1e-2, "bf16": 5e-2, "int8": 1e-2}


def tolerance(precision: str) -> float:
    return TOLERANCE.get(precision, 1e-4)


def to_nchw(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2))


def to_nhwc(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1))


def oracle_outputs(layer: Layer, weights: dict[str, np.ndarray], inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """The CPU kernel's outputs for `inputs` (host arrays in the layer's own layout)."""
    nhwc = layer.layout == "NHWC"
    args = [to_nchw(a) if nhwc and _activation_4d(layer, i, a, weights) else a for i, a in enumerate(inputs)]
    tactic = NumpyTactic()
    with np.errstate(all="ignore"):
        results = tactic.run(tactic.prepare(layer, weights), args)
    return [to_nhwc(r) if nhwc and r.ndim == 4 else r for r in results]


def _activation_4d(layer: Layer, index: int, array, weights) -> bool:
    return array is not None and array.ndim == 4 and layer.inputs[index] not in weights


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    finite = np.isfinite(want)
    if not np.array_equal(finite, np.isfinite(got)):
        return float("inf")
    diff = np.linalg.norm((got - want)[finite])
    scale = np.linalg.norm(want[finite])
    return float(diff / scale) if scale > 0 else float(diff)


def check_outputs(layer: Layer, got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> tuple[bool, float]:
    """(agrees, worst relative L2) of a tactic's outputs against the oracle's, at the layer's precision."""
    worst = 0.0
    for g, w in zip(got, want):
        dtype = np.asarray(w).dtype
        # int8 activations of int8 layers are compared as numbers, at int8's tolerance: a float
        # epilogue contracted differently (FMA) may round a value to the neighbouring integer
        quantized = layer.precision == "int8" and dtype.name in QUANTIZED_GRIDS
        if dtype.kind in "biu" and not quantized:
            worst = max(worst, 0.0 if np.array_equal(g, w) else float("inf"))
        else:
            worst = max(worst, rel_l2(g, w))
    return worst <= tolerance(layer.precision), worst
