"""Activation kernels: pointwise nonlinearities plus Softmax/LogSoftmax/Hardmax.

Pointwise activations are a table of `fn(x, c, attrs)` formulas, where `c(v)` makes a scalar of
x's dtype so float16 stays float16; one wrapper silences FP warnings (NaN/Inf propagate) and casts
the result back. Softmax-family ops handle the opset-13 change from "coerce to 2-D at axis" to
"along one axis".
"""
from __future__ import annotations

import math

import numpy as np

from workbench.backends.cpu.ops.elementwise import erf
from workbench.backends.cpu.registry import kernel

_SELU_ALPHA, _SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def _sigmoid(x, c):
    return c(1) / (c(1) + np.exp(-x))


def _softplus(x, c):
    return np.logaddexp(c(0), x)  # log(1 + exp(x)) without overflow


def _gelu(x, c, a):
    if a.get("approximate", "none") == "tanh":  # 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
        return c(0.5) * x * (c(1) + np.tanh(c(math.sqrt(2 / math.pi)) * (x + c(0.044715) * x * x * x)))
    return c(0.5) * x * (c(1) + erf(x / c(math.sqrt(2))))


def _shrink(x, lambd, bias):
    # x + bias if x < -lambd; x - bias if x > lambd; else 0 (python floats: exact for int x too)
    return np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))


_ACT = {
    "Relu": lambda x, c, a: np.maximum(x, c(0)),
    "LeakyRelu": lambda x, c, a: np.where(x < 0, x * c(a.get("alpha", 0.01)), x),
    "Sigmoid": lambda x, c, a: _sigmoid(x, c),
    "HardSigmoid": lambda x, c, a: np.clip(c(a.get("alpha", 0.2)) * x + c(a.get("beta", 0.5)), c(0), c(1)),
    "HardSwish": lambda x, c, a: x * np.clip(x / c(6) + c(0.5), c(0), c(1)),
    "Tanh": lambda x, c, a: np.tanh(x),
    "Elu": lambda x, c, a: np.where(x < 0, c(a.get("alpha", 1.0)) * np.expm1(x), x),
    # gamma * (x if x > 0 else alpha * (exp(x) - 1))
    "Selu": lambda x, c, a: c(a.get("gamma", _SELU_GAMMA)) * np.where(
        x > 0, x, c(a.get("alpha", _SELU_ALPHA)) * np.expm1(x)),
    # max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    "Celu": lambda x, c, a: np.maximum(c(0), x) + np.minimum(
        c(0), c(a.get("alpha", 1.0)) * np.expm1(x / c(a.get("alpha", 1.0)))),
    "Softplus": lambda x, c, a: _softplus(x, c),
    "Softsign": lambda x, c, a: x / (c(1) + np.abs(x)),
    "ThresholdedRelu": lambda x, c, a: np.where(x > c(a.get("alpha", 1.0)), x, c(0)),
    "Mish": lambda x, c, a: x * np.tanh(_softplus(x, c)),
    "Gelu": lambda x, c, a: _gelu(x, c, a),
    "Swish": lambda x, c, a: x * _sigmoid(c(a.get("alpha", 1.0)) * x, c),
    "Shrink": lambda x, c, a: _shrink(x, float(a.get("lambd", 0.5)), float(a.get("bias", 0.0))),
}


def _register(op, formula):
    @kernel(op)
    def run(inputs, attrs, node):
        x = inputs[0]
        with np.errstate(all="ignore"):
            return np.asarray(formula(x, x.dtype.type, attrs)).astype(x.dtype, copy=False)
    return run


for _op, _formula in _ACT.items():
    _register(_op, _formula)


@kernel("PRelu")
def prelu(inputs, attrs, node):
    x, slope = inputs
    if node.opset < 7 and slope.ndim == 1 and x.ndim > 2 and slope.size == x.shape[1]:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))  # legacy per-channel slope
    with np.errstate(all="ignore"):
        return np.asarray(np.where(x < 0, x * slope, x)).astype(x.dtype, copy=False)


def _along_axis(fn):
    """Apply `fn(x, axis)` per the opset: >= 13 along `axis` (default -1); before, on the input
    coerced to 2-D [prod(shape[:axis]), prod(shape[axis:])] (default axis 1). Computed in x's
    dtype, as the ONNX reference does (the bfloat16 Attention tests depend on it)."""
    def run(inputs, attrs, node):
        x = inputs[0]
        if x.size == 0:
            return x.copy()
        dt = x.dtype
        with np.errstate(all="ignore"):
            if node.opset >= 13:
                return np.asarray(fn(x, attrs.get("axis", -1))).astype(dt, copy=False)
            axis = attrs.get("axis", 1) % max(x.ndim, 1)
            x2 = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
            return np.asarray(fn(x2, -1)).reshape(x.shape).astype(dt, copy=False)
    return run


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _hardmax(x, axis):
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)  # first occurrence wins ties
    out = np.zeros_like(x)
    np.put_along_axis(out, idx, x.dtype.type(1), axis=axis)
    return out


kernel("Softmax")(_along_axis(_softmax))
kernel("LogSoftmax")(_along_axis(_log_softmax))
kernel("Hardmax")(_along_axis(_hardmax))
