"""Post-training weight-only INT8 quantization (TFLite "dynamic range" style).

Why: storing weights as int8 makes a model ~4x smaller with no calibration data at all; at run time the
weights are dequantized (or fed to hybrid kernels that take int8 weights and float activations).
Symmetric per-output-channel scales keep the error of every channel proportional to its own range:

    s_c = max_{j} |w[c, j]| / 127          (1.0 for an all-zero channel)
    q   = clip(round_half_even(w / s_c), -127, 127)        w' = q * s_c
    |w - w'| <= s_c / 2                     for every element (no clipping: |w| <= 127 s_c)

`axis` is the output-channel axis: 0 for Conv [O, I, kh, kw] and Gemm transB=1 [N, K], 1 for MatMul
B [K, N]; None for one per-tensor scale. The stored size is the int8 values plus one float32 scale per
channel, so the ratio to float32 is 4 / (1 + 4 * channels / size), just under 4.

    >>> q, s = quantize_weights(np.array([[0.5, -1.0], [2.0, 0.0]], np.float32))
    >>> q.tolist(), s.tolist()
    ([[64, -127], [127, 0]], [0.007874015718698502, 0.015748031437397003])
"""
from __future__ import annotations

import numpy as np

from workbench.quant.quantize import dequantize, quantize, weight_scales

__all__ = ["quantize_weights", "dequantize_weights", "size_ratio", "weight_only_report"]


def quantize_weights(w, axis: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """w (float) -> (int8 array of w's shape, float32 scales of shape [w.shape[axis]] or 0-d)."""
    w = np.asarray(w, np.float32)
    scales = weight_scales(w, axis)
    return quantize(w, scales, 0, np.int8, axis=None if scales.ndim == 0 else axis), scales


def dequantize_weights(q, scales, axis: int | None = 0) -> np.ndarray:
    """q * scales along `axis`, float32."""
    scales = np.asarray(scales, np.float32)
    return dequantize(q, scales, 0, axis=None if scales.ndim == 0 else axis)


def size_ratio(w, q, scales) -> float:
    """Bytes of w as stored (its dtype) over bytes of q plus its float32 scales (~4 for float32 w)."""
    stored = np.asarray(q).nbytes + np.asarray(scales, np.float32).nbytes
    return float(np.asarray(w).nbytes / stored) if stored else 1.0


def weight_only_report(weights: dict[str, np.ndarray], axis: int | None | dict[str, int | None] = 0):
    """One row per weight: name, shape, bytes.fp32, bytes.int8 (values + scales), size_ratio,
    err.max_abs, err.max_over_half_scale (<= 1 by construction), err.rel_l2 (a pandas DataFrame)."""
    import pandas as pd
    rows = []
    for name, w in weights.items():
        w = np.asarray(w, np.float32)
        ax = axis.get(name, 0) if isinstance(axis, dict) else axis
        q, s = quantize_weights(w, ax)
        dq = dequantize_weights(q, s, ax)
        err = np.abs(w.astype(np.float64) - dq)
        half = np.broadcast_to(along(s, w.ndim, ax) / 2.0, w.shape)
        norm = float(np.linalg.norm(w))
        rows.append({"name": name, "shape": tuple(w.shape), "bytes.fp32": w.nbytes,
                     "bytes.int8": q.nbytes + s.nbytes, "size_ratio": size_ratio(w, q, s),
                     "err.max_abs": float(err.max()) if err.size else 0.0,
                     "err.max_over_half_scale": float((err / half).max()) if err.size else 0.0,
                     "err.rel_l2": float(np.linalg.norm(err) / norm) if norm else 0.0})
    return pd.DataFrame(rows)


def along(s: np.ndarray, ndim: int, axis: int | None, dtype=np.float64) -> np.ndarray:
    """Per-channel scales `s` shaped to broadcast along `axis` of an `ndim`-D tensor."""
    if s.ndim == 0 or axis is None:
        return s.astype(dtype)
    shape = [1] * ndim
    shape[axis % ndim] = s.size
    return s.astype(dtype).reshape(shape)
