"""Elementwise math, comparison, logic, bitwise and type-conversion kernels.

Most ops map one-to-one onto a numpy ufunc, so they are registered from tables; only ops whose
ONNX semantics differ from numpy's (C-style integer Div, integer Pow, Mod's sign rule, Cast's
float8 saturation, Clip/Dropout's opset-dependent signatures) get their own function. Results
are cast back to the input dtype so integer wraparound and float16/bfloat16 precision match ONNX.
"""
from __future__ import annotations

import functools
import math

import ml_dtypes
import numpy as np

from workbench.backends.cpu.registry import kernel
from workbench.ir.dtypes import np_dtype

_py_erf = np.frompyfunc(math.erf, 1, 1)


@functools.cache
def _erf_impl():
    try:  # imported lazily: scipy is optional and slow to import
        from scipy.special import erf as scipy_erf
        return scipy_erf
    except ImportError:  # pragma: no cover
        return _py_erf


def erf(x: np.ndarray) -> np.ndarray:
    """Gauss error function in x's dtype (scipy when available, else math.erf per element)."""
    x = np.asarray(x)
    return np.asarray(_erf_impl()(x.astype(np.float64)), dtype=np.float64).astype(x.dtype)


def _same(fn):
    """Wrap a ufunc so the result is an ndarray of the first input's dtype, warnings silenced."""
    def run(*xs):
        with np.errstate(all="ignore"):
            return np.asarray(fn(*xs)).astype(xs[0].dtype, copy=False)
    return run


def _raw(fn):
    """Wrap a ufunc whose output dtype is fixed by numpy already (bool results)."""
    def run(*xs):
        with np.errstate(all="ignore"):
            return np.asarray(fn(*xs))
    return run


_UNARY = {
    "Neg": _same(np.negative), "Abs": _same(np.abs), "Sqrt": _same(np.sqrt), "Exp": _same(np.exp),
    "Log": _same(np.log), "Reciprocal": _same(np.reciprocal), "Floor": _same(np.floor),
    "Ceil": _same(np.ceil), "Round": _same(np.round),  # np.round is round-half-to-even
    "Sign": _same(np.sign), "Erf": erf, "Sin": _same(np.sin), "Cos": _same(np.cos),
    "Tan": _same(np.tan), "Asin": _same(np.arcsin), "Acos": _same(np.arccos), "Atan": _same(np.arctan),
    "Sinh": _same(np.sinh), "Cosh": _same(np.cosh), "Asinh": _same(np.arcsinh),
    "Acosh": _same(np.arccosh), "Atanh": _same(np.arctanh), "Not": _raw(np.logical_not),
    "BitwiseNot": _same(np.invert), "IsNaN": _raw(np.isnan),
}
_BINARY = {
    "Add": _same(np.add), "Sub": _same(np.subtract), "Mul": _same(np.multiply),
    "Equal": _raw(np.equal), "Greater": _raw(np.greater), "Less": _raw(np.less),
    "GreaterOrEqual": _raw(np.greater_equal), "LessOrEqual": _raw(np.less_equal),
    "And": _raw(np.logical_and), "Or": _raw(np.logical_or), "Xor": _raw(np.logical_xor),
    "BitwiseAnd": _same(np.bitwise_and), "BitwiseOr": _same(np.bitwise_or),
    "BitwiseXor": _same(np.bitwise_xor),
}
_VARIADIC = {"Max": _same(np.maximum), "Min": _same(np.minimum), "Sum": _same(np.add)}


def _register(table, arity):
    for op, fn in table.items():
        if arity == 1:
            kernel(op)(lambda inputs, attrs, node, fn=fn: fn(inputs[0]))
        elif arity == 2:
            kernel(op)(lambda inputs, attrs, node, fn=fn: fn(inputs[0], inputs[1]))
        else:
            kernel(op)(lambda inputs, attrs, node, fn=fn: functools.reduce(fn, [x for x in inputs if x is not None]))


_register(_UNARY, 1)
_register(_BINARY, 2)
_register(_VARIADIC, 0)


@kernel("Mean")
def mean(inputs, attrs, node):
    xs = [x for x in inputs if x is not None]
    with np.errstate(all="ignore"):
        return np.asarray(functools.reduce(np.add, xs) / xs[0].dtype.type(len(xs))).astype(xs[0].dtype)


@kernel("Div")
def div(inputs, attrs, node):
    a, b = inputs
    with np.errstate(all="ignore"):
        if a.dtype.kind == "i":  # C-style: truncate toward zero, not numpy's floor
            q = np.floor_divide(a, b)
            q = q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0))).astype(q.dtype)
            return np.asarray(q).astype(a.dtype)
        return np.asarray(np.divide(a, b)).astype(a.dtype)


@kernel("Mod")
def mod(inputs, attrs, node):
    a, b = inputs
    fn = np.fmod if attrs.get("fmod", 0) else np.mod  # fmod=0: sign of divisor (Python %)
    return _same(fn)(a, b)


@kernel("Pow")
def pow_(inputs, attrs, node):
    a, b = inputs
    with np.errstate(all="ignore"):
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            neg = b < 0  # x**-n truncates to 0 except for x = 1 and x = -1
            r = np.power(a, np.where(neg, 0, b).astype(b.dtype)).astype(a.dtype)
            inv = np.where(a == 1, 1, np.where((a == -1) & (b % 2 != 0), -1, np.where(a == -1, 1, 0)))
            return np.asarray(np.where(neg, inv.astype(a.dtype), r)).astype(a.dtype)
        if a.dtype.kind in "iu":
            return np.asarray(np.power(a.astype(np.float64), b.astype(np.float64))).astype(a.dtype)
        wide = np.result_type(a.dtype, np.float32) if b.dtype != a.dtype else a.dtype
        return np.asarray(np.power(a.astype(wide), b.astype(wide))).astype(a.dtype)


@kernel("IsInf")
def isinf(inputs, attrs, node):
    x = inputs[0]
    neg, pos = attrs.get("detect_negative", 1), attrs.get("detect_positive", 1)
    with np.errstate(all="ignore"):
        return np.asarray(np.isinf(x) & ((bool(pos) & (x > 0)) | (bool(neg) & (x < 0))))


@kernel("Where")
def where(inputs, attrs, node):
    c, x, y = inputs
    return np.asarray(np.where(c, x, y)).astype(x.dtype, copy=False)


@kernel("BitShift")
def bitshift(inputs, attrs, node):
    fn = np.left_shift if attrs["direction"] == "LEFT" else np.right_shift
    return _same(fn)(inputs[0], inputs[1])


_F8 = {"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"}


def _to_str(v) -> str:
    if isinstance(v, float):
        return "NaN" if v != v else "INF" if v == math.inf else "-INF" if v == -math.inf else f"{v:.8g}"
    return str(int(v)) if isinstance(v, (bool, int)) else str(v)


def cast_to(x: np.ndarray, to: np.dtype, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """ONNX Cast: float8 targets saturate (clip to the finite range) unless told not to; strings
    are parsed / printed."""
    x = np.asarray(x)
    if to == np.dtype(object):  # to STRING, formatted as onnxruntime does
        return np.array([_to_str(v) for v in x.ravel().tolist()], dtype=object).reshape(x.shape)
    if x.dtype == np.dtype(object):  # from STRING: parse via float64 (handles NaN/INF/+INF)
        x = np.array([float(v.decode() if isinstance(v, bytes) else v) for v in x.ravel()],
                     dtype=np.float64).reshape(x.shape)
    with np.errstate(all="ignore"):
        if to.name == "float8_e8m0fnu":
            from onnx.numpy_helper import to_float8e8m0
            return to_float8e8m0(x.astype(np.float32), saturate, round_mode).reshape(x.shape)
        if to.name in _F8 or to.name.startswith(("float4", "float6")):
            x = x.astype(np.float32)
            if saturate and to.name in _F8:
                info = ml_dtypes.finfo(to)
                x = np.clip(x, np.float32(info.min), np.float32(info.max))
        return np.asarray(x.astype(to))


@kernel("Cast")
def cast(inputs, attrs, node):
    return cast_to(inputs[0], np_dtype(attrs["to"]), bool(attrs.get("saturate", 1)),
                   attrs.get("round_mode", "up"))


@kernel("CastLike")
def castlike(inputs, attrs, node):
    return cast_to(inputs[0], inputs[1].dtype, bool(attrs.get("saturate", 1)), attrs.get("round_mode", "up"))


@kernel("Identity")
def identity(inputs, attrs, node):
    return [inputs[0]]  # a list so sequence-typed values pass through as one output


@kernel("Clip")
def clip(inputs, attrs, node):
    x = inputs[0]
    if node.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo = inputs[1] if len(inputs) > 1 else None
        hi = inputs[2] if len(inputs) > 2 else None
    with np.errstate(all="ignore"):
        if lo is not None:
            x = np.maximum(x, np.asarray(lo).astype(x.dtype))
        if hi is not None:  # min > max gives max everywhere, as ONNX specifies
            x = np.minimum(x, np.asarray(hi).astype(x.dtype))
    return np.asarray(x).astype(inputs[0].dtype, copy=False)


@kernel("Dropout")
def dropout(inputs, attrs, node):
    x = inputs[0]
    if node.opset >= 12:
        ratio = float(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else 0.5
        training = bool(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else False
    else:
        ratio, training = attrs.get("ratio", 0.5), False
    if training and ratio > 0:  # random: cannot match a reference bit for bit
        mask = np.random.default_rng(attrs.get("seed")).uniform(size=x.shape) >= ratio
        y = (x * mask / x.dtype.type(1 - ratio)).astype(x.dtype)
    else:
        mask, y = np.ones(x.shape, dtype=bool), x
    if node.num_outputs < 2:
        return y
    return [y, mask if node.opset >= 10 else mask.astype(x.dtype)]


@kernel("Einsum")
def einsum(inputs, attrs, node):
    eq, dt = attrs["equation"].replace(" ", ""), inputs[0].dtype
    xs = [x.astype(np.float32) if dt.type.__module__.startswith("ml_dtypes") else x for x in inputs]
    return np.asarray(np.einsum(eq, *xs)).astype(dt, copy=False)
