"""Indexing kernels: gathers, scatters and data-dependent selections (Gather*, Scatter*, NonZero,
Compress, TopK, Unique, ReverseSequence).

ONNX allows negative indices (counted from the end of the axis) everywhere; they are normalised
once by `_wrap`, which also rejects out-of-range ones instead of letting numpy wrap or fail
deep inside fancy indexing. Scatters copy the data first (outputs never alias inputs) and use
`ufunc.at` for reductions so duplicate indices accumulate as the spec requires.
TopK orders ties by the smaller index first, matching onnx's tests and onnxruntime.
"""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.ops.shape import ints, norm_axis
from workbench.backends.cpu.registry import kernel

_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _wrap(idx, dim: int) -> np.ndarray:
    idx = np.asarray(idx).astype(np.int64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise IndexError(f"index out of range [-{dim}, {dim})")
    return np.where(idx < 0, idx + dim, idx)


@kernel("Gather")
def gather(inputs, attrs, node):
    x, idx = inputs[0], inputs[1]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    return np.asarray(np.take(x, _wrap(idx, x.shape[axis]), axis=axis))  # 0-d: not a numpy scalar


@kernel("GatherElements")
def gather_elements(inputs, attrs, node):
    x, idx = inputs[0], inputs[1]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    return np.take_along_axis(x, _wrap(idx, x.shape[axis]), axis=axis)


@kernel("GatherND")
def gather_nd(inputs, attrs, node):
    x, idx = inputs[0], np.asarray(inputs[1]).astype(np.int64)
    b = attrs.get("batch_dims", 0)
    k = idx.shape[-1]
    batch = x.shape[:b]
    nb = int(np.prod(batch, dtype=np.int64))
    m = int(np.prod(idx.shape[b:-1], dtype=np.int64))
    xr = x.reshape((nb,) + x.shape[b:])
    ir = idx.reshape(nb, m, k)
    coords = tuple(_wrap(ir[..., j], x.shape[b + j]) for j in range(k))
    out = xr[(np.broadcast_to(np.arange(nb)[:, None], (nb, m)),) + coords]  # (nb, m) + x.shape[b+k:]
    return out.reshape(idx.shape[:-1] + x.shape[b + k:])


def _scatter(out, index, updates, reduction):
    if reduction == "none":
        out[index] = updates
    else:
        _REDUCE[reduction].at(out, index, updates)
    return out


@kernel("ScatterElements", "Scatter")
def scatter_elements(inputs, attrs, node):
    x, idx, upd = inputs
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    idx = _wrap(idx, x.shape[axis])
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    return _scatter(x.copy(), tuple(grid), upd, attrs.get("reduction", "none"))


@kernel("ScatterND")
def scatter_nd(inputs, attrs, node):
    x, idx, upd = inputs
    k = idx.shape[-1]
    index = tuple(_wrap(idx[..., j], x.shape[j]) for j in range(k))
    return _scatter(x.copy(), index, upd, attrs.get("reduction", "none"))


@kernel("NonZero")
def nonzero(inputs, attrs, node):
    x = inputs[0]
    x = x.reshape(1) if x.ndim == 0 else x  # onnxruntime treats a scalar as shape [1]
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@kernel("Compress")
def compress(inputs, attrs, node):
    x, cond = inputs[0], inputs[1].astype(bool).reshape(-1)
    axis = attrs.get("axis")
    if axis is None:
        return np.compress(cond, x.reshape(-1))
    return np.compress(cond, x, axis=norm_axis(axis, x.ndim))


@kernel("TopK")
def topk(inputs, attrs, node):
    x = inputs[0]
    k = attrs["k"] if node.opset < 10 else ints(inputs[1])[0]
    axis = norm_axis(attrs.get("axis", -1), x.ndim)
    n = x.shape[axis]
    if attrs.get("largest", 1):
        # stable ascending sort of the reversed axis, read backwards: descending, and among
        # equal values the smaller original index comes first
        rev = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = (n - 1) - np.flip(rev, axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    order = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, order, axis=axis), order.astype(np.int64)


@kernel("Unique")
def unique(inputs, attrs, node):
    x = inputs[0]
    axis = attrs.get("axis")
    if axis is not None:
        axis = norm_axis(axis, x.ndim)
    else:
        x = x.reshape(-1)
    y, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True,
                                          return_counts=True, axis=axis)
    inverse = inverse.reshape(-1)
    if not attrs.get("sorted", 1):  # order of first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        y = np.take(y, order, axis=0 if axis is None else axis)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    i64 = np.int64
    return y, first.astype(i64), inverse.astype(i64), counts.astype(i64)


@kernel("ReverseSequence")
def reverse_sequence(inputs, attrs, node):
    x, lens = inputs[0], inputs[1].astype(np.int64)
    t_ax, b_ax = attrs.get("time_axis", 0), attrs.get("batch_axis", 1)
    t = np.arange(x.shape[t_ax])[:, None]
    src = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)  # (T, B)
    if t_ax > b_ax:
        src = src.T
    shape = [1] * x.ndim
    shape[t_ax], shape[b_ax] = x.shape[t_ax], x.shape[b_ax]
    src = np.broadcast_to(src.reshape(shape), x.shape)
    return np.take_along_axis(x, src, axis=t_ax)
