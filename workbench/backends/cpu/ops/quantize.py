"""QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, and the shared requantize step.

These are the oracle for the INT8 path, so they must be bit-exact: x / scale is divided in the
input precision (or the `precision` attr), rounded half-to-even, the integer zero point is added
exactly (in float64) and the result saturated to the target type. Sub-byte and float8/float4
types use ml_dtypes (the types onnx's numpy_helper produces).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx.helper import tensor_dtype_to_np_dtype

from workbench.backends.cpu.registry import kernel


def int_range(dt):
    """(min, max) of an integer dtype (numpy or ml_dtypes int4/uint4/int2/...), else None."""
    dt = np.dtype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
    else:
        try:
            info = ml_dtypes.iinfo(dt)
        except (ValueError, TypeError):
            return None
    return int(info.min), int(info.max)


def requantize(acc, factor, zero_point, dtype) -> np.ndarray:
    """round_half_even(acc * factor + zero_point) saturated to `dtype` (QLinear* outputs)."""
    y = np.asarray(acc, np.float64) * np.asarray(factor).astype(np.float64)
    if zero_point is not None:
        y = y + np.asarray(zero_point).astype(np.float64)
    lo, hi = int_range(dtype)
    return np.clip(np.nan_to_num(np.rint(y), nan=0.0), lo, hi).astype(dtype)


def _param(v: np.ndarray, shape, axis: int, block_size: int) -> np.ndarray:
    """Broadcast a scale/zero point (scalar, per-axis 1-D or blocked) against `shape`."""
    v = np.asarray(v)
    if v.size == 1:
        return v.reshape(())
    axis = axis % len(shape)
    if block_size:
        v = np.repeat(v, block_size, axis=axis)
        return v.take(np.arange(shape[axis]), axis=axis)
    dims = [1] * len(shape)
    dims[axis] = v.size
    return v.reshape(dims)


def _out_dtype(attrs, zero_point, default):
    code = attrs.get("output_dtype", 0)
    if zero_point is not None:
        return zero_point.dtype
    return np.dtype(tensor_dtype_to_np_dtype(code)) if code else np.dtype(default)


@kernel("QuantizeLinear")
def quantize_linear(inputs, attrs, node):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    out = _out_dtype(attrs, zp, np.uint8)
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    scale = _param(scale, x.shape, axis, block)
    prec = attrs.get("precision", 0)
    calc = np.dtype(tensor_dtype_to_np_dtype(prec)) if prec else scale.dtype  # spec: scale's type
    with np.errstate(all="ignore"):
        if calc.kind == "f":
            q = x.astype(calc) / scale.astype(calc)
        else:  # bfloat16: divide in float32, round to bfloat16
            q = (x.astype(np.float32) / scale.astype(np.float32)).astype(calc).astype(np.float32)
        rng = int_range(out)
        if rng is not None:
            y = np.rint(q).astype(np.float64)
            if zp is not None:
                y += _param(zp, x.shape, axis, block).astype(np.float64)
            return np.clip(np.nan_to_num(y, nan=0.0), *rng).astype(out)
        y = q.astype(np.float32)
        if zp is not None:
            y = y + _param(zp, x.shape, axis, block).astype(np.float32)
        if attrs.get("saturate", 1):
            fmax = float(ml_dtypes.finfo(out).max)
            y = np.clip(y, -fmax, fmax)  # clip keeps NaN
        return y.astype(out)


@kernel("DequantizeLinear")
def dequantize_linear(inputs, attrs, node):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
    code = attrs.get("output_dtype", 0)
    out = np.dtype(tensor_dtype_to_np_dtype(code)) if code else scale.dtype
    s = _param(scale, x.shape, axis, block)
    with np.errstate(all="ignore"):
        if int_range(x.dtype) is not None:
            dx = np.asarray(x).astype(np.int64)
            if zp is not None:
                dx = dx - _param(zp, x.shape, axis, block).astype(np.int64)
            dx = dx.astype(np.float32)
        else:  # float8 / float4: zero point is 0 (float4 may carry one)
            dx = x.astype(np.float32)
            if zp is not None:
                dx = dx - _param(zp, x.shape, axis, block).astype(np.float32)
        return (dx * s.astype(np.float32)).astype(out)


@kernel("DynamicQuantizeLinear")
def dynamic_quantize_linear(inputs, attrs, node):
    x = inputs[0]
    with np.errstate(all="ignore"):
        hi = np.float32(max(0.0, float(np.max(x)))) if x.size else np.float32(0)
        lo = np.float32(min(0.0, float(np.min(x)))) if x.size else np.float32(0)
        scale = np.float32(1.0 if hi == lo else hi - lo) / np.float32(255)
        zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
        y = np.clip(np.rint(x.astype(np.float32) / scale) + zp, 0, 255)
        return (np.nan_to_num(y, nan=0.0).astype(np.uint8), np.asarray(scale, x.dtype),
                np.asarray(zp, np.uint8))
