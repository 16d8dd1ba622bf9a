"""INT8 numerics shared by the CPU emulation: quantize, dequantize, exact integer matmul, requantize.

Why one module: the CPU path is the oracle for the GPU one (DESIGN.md "numerics are faithful"), so the
rounding, saturation and accumulation rules live in exactly one place, and they are those of ONNX
QuantizeLinear / DequantizeLinear (what onnxruntime and TensorRT's explicit Q/DQ do):

    q  = saturate(round_half_even(x / s) + z)          x / s divided in float32
    x' = (q - z) * s                                   in float32
    s  = amax / 127                                    symmetric: z = 0, range [-127, 127] in practice

An INT8 GEMM multiplies integers and accumulates exactly in int32, then one float multiplier maps the
accumulator to the next layer's INT8 grid:

    acc[m, n] = sum_k a_q[m, k] * b_q[k, n]                              (exact; |acc| < 2**31)
    y_q       = saturate(round_half_even(acc * (s_a * s_b[n] / s_y)) + z_y)

The exact accumulation is a float64 matmul on the integer values: every partial sum is an integer below
2**53, so any summation order (BLAS blocking, FMA) gives the same exact result; the range check after
it is what an int32 accumulator would silently wrap on.

    >>> q = quantize(np.array([0.25, 0.75, -1.0, 100.0], np.float32), 0.5)
    >>> q.tolist(), dequantize(q, 0.5).tolist()     # 0.5 -> 0, 1.5 -> 2 (half to even); 200 saturates
    ([0, 2, -2, 127], [0.0, 1.0, -1.0, 63.5])
"""
from __future__ import annotations

import numpy as np

from workbench.quant.errors import QuantizationError

__all__ = ["quantize", "dequantize", "weight_scales", "int8_matmul", "requantize", "QMAX"]

QMAX = 127          # symmetric INT8: [-127, 127]; -128 is never produced by a symmetric scale
_INT32 = (-2**31, 2**31 - 1)


def _broadcast(v, ndim: int, axis: int | None) -> np.ndarray:
    """A scalar stays a scalar; a 1-D per-channel vector is shaped to broadcast along `axis`."""
    v = np.asarray(v)
    if v.ndim == 0 or axis is None:
        return v
    shape = [1] * ndim
    shape[axis % ndim] = v.size
    return v.reshape(shape)


def _check_scale(scale) -> np.ndarray:
    s = np.asarray(scale, np.float32)
    if not np.all(np.isfinite(s) & (s > 0)):
        raise QuantizationError(f"quantization scale must be finite and > 0, got {s.tolist()}")
    return s


def quantize(x, scale, zero_point=0, dtype=np.int8, axis: int | None = None) -> np.ndarray:
    """round_half_even(x / scale) + zero_point, saturated to `dtype` (ONNX QuantizeLinear).

    Args:
        x: float array.
        scale: positive scalar, or 1-D per-channel scales along `axis`.
        zero_point: integer scalar or per-channel vector (0 for the symmetric scheme).
        dtype: np.int8 or np.uint8 (any integer type works).
        axis: the channel axis of per-channel `scale` / `zero_point`; None for per-tensor.
    NaN quantizes to the zero point (as the CPU backend's QuantizeLinear does).
    """
    x = np.asarray(x)
    s = _broadcast(_check_scale(scale), x.ndim, axis)
    info = np.iinfo(dtype)
    with np.errstate(all="ignore"):
        y = np.rint(x.astype(np.float32) / s).astype(np.float64)
        y = np.nan_to_num(y, nan=0.0) + _broadcast(np.asarray(zero_point, np.float64), x.ndim, axis)
        return np.clip(y, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point=0, axis: int | None = None) -> np.ndarray:
    """(q - zero_point) * scale in float32 (ONNX DequantizeLinear)."""
    q = np.asarray(q)
    s = _broadcast(np.asarray(scale, np.float32), q.ndim, axis)
    z = _broadcast(np.asarray(zero_point, np.int64), q.ndim, axis)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def weight_scales(w, axis: int | None = 0) -> np.ndarray:
    """Symmetric per-output-channel scales amax_c / 127, float32, shape [w.shape[axis]].

    `axis` is the output-channel axis: 0 for Conv [O, I, kh, kw] and Gemm transB=1 [N, K], 1 for MatMul
    B [K, N]; None gives one per-tensor scale (0-d). A channel that is all zero gets scale 1.0 (it
    quantizes to exact zeros either way; 1.0 keeps the scale positive and harmless).
    """
    w = np.asarray(w, np.float32)
    if axis is None:
        amax = np.max(np.abs(w)) if w.size else np.float32(0)
    else:
        axis = axis % w.ndim
        others = tuple(d for d in range(w.ndim) if d != axis)
        amax = np.max(np.abs(w), axis=others) if w.size else np.zeros(w.shape[axis], np.float32)
    s = (np.asarray(amax, np.float32) / np.float32(QMAX)).astype(np.float32)
    return np.where(s > 0, s, np.float32(1.0)).astype(np.float32)


def int8_matmul(a_q, b_q) -> np.ndarray:
    """Exact integer matmul a_q @ b_q -> int32, raising QuantizationError if a sum leaves int32.

    Inputs are int8 or uint8 arrays (zero points already subtracted, or zero); shapes follow np.matmul.
    """
    a_q, b_q = np.asarray(a_q), np.asarray(b_q)
    for name, v in (("a_q", a_q), ("b_q", b_q)):
        if v.dtype.kind not in "iu" or v.dtype.itemsize > 2:
            raise QuantizationError(f"int8_matmul: {name} must be an 8/16-bit integer array, got {v.dtype}")
    acc = np.matmul(a_q.astype(np.float64), b_q.astype(np.float64))
    lo, hi = (float(acc.min()), float(acc.max())) if acc.size else (0.0, 0.0)
    if lo < _INT32[0] or hi > _INT32[1]:
        raise QuantizationError(
            f"int8_matmul: int32 accumulator overflow (range [{lo:.0f}, {hi:.0f}]) for shapes "
            f"{a_q.shape} @ {b_q.shape}")
    return acc.astype(np.int32)


def requantize(acc, scale_in, scale_out, zero_point=0, dtype=np.int8, axis: int | None = None) -> np.ndarray:
    """saturate(round_half_even(acc * scale_in / scale_out) + zero_point) -> `dtype`.

    `scale_in` is the accumulator's scale, s_a * s_b (a vector along `axis` for per-channel weights);
    the multiplier is formed and applied in float64, as the CPU backend's QLinear* kernels do.
    """
    acc = np.asarray(acc)
    m = np.asarray(scale_in, np.float64) / np.asarray(_check_scale(scale_out), np.float64)
    y = np.rint(acc.astype(np.float64) * _broadcast(m, acc.ndim, axis))
    y = y + _broadcast(np.asarray(zero_point, np.float64), acc.ndim, axis)
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)
