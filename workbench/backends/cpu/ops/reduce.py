"""Reduction kernels: Reduce*, ArgMax/ArgMin and CumSum.

All Reduce* ops share one driver that resolves the opset-dependent `axes` (an attribute before
opset 13 for ReduceSum / 18 for the rest, an input after), `keepdims` and `noop_with_empty_axes`,
then applies a per-op formula. Reductions over an empty set return the op's identity (0 for sums,
-inf/+inf or the integer limits for max/min, -inf for the log-sums) as the ONNX tests expect.
"""
from __future__ import annotations

import math

import numpy as np

from workbench.backends.cpu.registry import kernel


def _lowest(dt: np.dtype, highest: bool = False):
    """Identity of max (or min, with highest=True) for dtype `dt`."""
    if dt == np.bool_:
        return np.bool_(highest)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return info.max if highest else info.min
    return dt.type(np.inf if highest else -np.inf)


def _max(x, ax, kd):
    return np.max(x, axis=ax, keepdims=kd, initial=_lowest(x.dtype))


def _logsumexp(x, ax, kd):
    m = np.max(x, axis=ax, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)  # log(sum(exp(x - m))) + m, m finite
    r = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return r if kd else np.squeeze(r, axis=ax)


def _mean(x, ax, kd):
    n = x.size if ax is None else math.prod(x.shape[a] for a in ax)
    acc = np.float64 if x.dtype.kind in "iu" else None
    return np.sum(x, axis=ax, keepdims=kd, dtype=acc) / n  # empty set: 0 / 0 = NaN


_REDUCE = {
    "ReduceSum": lambda x, ax, kd: np.sum(x, axis=ax, keepdims=kd),
    "ReduceMean": _mean,
    "ReduceMax": _max,
    "ReduceMin": lambda x, ax, kd: np.min(x, axis=ax, keepdims=kd, initial=_lowest(x.dtype, True)),
    "ReduceProd": lambda x, ax, kd: np.prod(x, axis=ax, keepdims=kd),
    "ReduceL1": lambda x, ax, kd: np.sum(np.abs(x), axis=ax, keepdims=kd),
    "ReduceL2": lambda x, ax, kd: np.sqrt(np.sum(np.square(x), axis=ax, keepdims=kd)),
    "ReduceLogSum": lambda x, ax, kd: np.log(np.sum(x, axis=ax, keepdims=kd)),
    "ReduceLogSumExp": _logsumexp,
    "ReduceSumSquare": lambda x, ax, kd: np.sum(np.square(x), axis=ax, keepdims=kd),
}


def _axes(op, inputs, attrs, node):
    """Axes to reduce as a tuple, or None when absent or empty."""
    as_input = node.opset >= (13 if op == "ReduceSum" else 18)
    axes = (inputs[1] if len(inputs) > 1 else None) if as_input else attrs.get("axes")
    if axes is None or np.size(axes) == 0:
        return None
    return tuple(int(a) for a in np.asarray(axes).reshape(-1))


def _register(op, formula):
    @kernel(op)
    def run(inputs, attrs, node):
        x = inputs[0]
        axes = _axes(op, inputs, attrs, node)
        if axes is None and attrs.get("noop_with_empty_axes", 0):
            return x
        if axes is not None:
            axes = tuple(sorted({a % max(x.ndim, 1) for a in axes}))
        with np.errstate(all="ignore"):
            y = formula(x, axes, bool(attrs.get("keepdims", 1)))
        return np.asarray(y).astype(x.dtype, copy=False)
    return run


for _op, _formula in _REDUCE.items():
    _register(_op, _formula)


def _arg(fn):
    def run(inputs, attrs, node):
        x = inputs[0]
        axis = attrs.get("axis", 0) % max(x.ndim, 1)
        if attrs.get("select_last_index", 0):  # search the reversed axis, map index back
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis=axis), axis=axis)
        else:
            idx = fn(x, axis=axis)
        if attrs.get("keepdims", 1):
            idx = np.expand_dims(idx, axis)
        return np.asarray(idx, dtype=np.int64)
    return run


kernel("ArgMax")(_arg(np.argmax))
kernel("ArgMin")(_arg(np.argmin))


@kernel("CumSum")
def cumsum(inputs, attrs, node):
    x, axis = inputs[0], int(np.asarray(inputs[1]).reshape(-1)[0])
    axis %= max(x.ndim, 1)
    rev, excl = attrs.get("reverse", 0), attrs.get("exclusive", 0)
    y = np.flip(x, axis) if rev else x
    with np.errstate(all="ignore"):
        c = np.cumsum(y, axis=axis, dtype=x.dtype)
    if excl and c.shape[axis]:  # shift by one: y[i] = sum(x[:i])
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, np.take(c, np.arange(c.shape[axis] - 1), axis=axis)], axis=axis)
    return np.flip(c, axis) if rev else c
