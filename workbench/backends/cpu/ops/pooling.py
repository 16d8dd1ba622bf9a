"""Pooling and LRN.

Window pools reduce over kernel taps: each tap is one strided view of the padded input (shared
helpers in `nn.py`), combined with a vectorised maximum/add, so cost is kernel-size passes over
the output rather than a Python loop over pixels. Average-pool divisors come from pooling a
spatial-only mask of "countable" positions, which handles count_include_pad, ceil_mode overhang
and dilations uniformly. Half precision accumulates in float32.
"""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.ops.nn import acc_dtype, pad_spatial, window_geometry, window_taps
from workbench.backends.cpu.registry import kernel


def _geometry(x, attrs):
    kernel_ = attrs["kernel_shape"]
    return window_geometry(x.shape[2:], kernel_, attrs, bool(attrs.get("ceil_mode", 0)), pool=True)


def _lowest(dt):
    return np.iinfo(dt).min if np.dtype(dt).kind in "iu" else -np.inf


def _window_sum(xp, geo, acc, shape):
    y = np.zeros(shape, acc)
    for _, view in window_taps(xp, geo):
        y += view
    return y


def _divisor(x_spatial, geo, include_pad: bool) -> np.ndarray:
    """How many countable positions each output window covers."""
    m = np.zeros(x_spatial, np.float64)
    mp = pad_spatial(m, geo, 0.0)
    lo = [0 if include_pad else max(0, b) for b in geo.pads_begin]
    hi = [max(0, b + i + (a if include_pad else 0))
          for b, i, a in zip(geo.pads_begin, x_spatial, geo.pads_end)]
    mp[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    return _window_sum(mp, geo, np.float64, geo.out)


@kernel("MaxPool")
def max_pool(inputs, attrs, node):
    x = inputs[0]
    geo = _geometry(x, attrs)
    shape = x.shape[:2] + geo.out
    with np.errstate(all="ignore"):
        xp = pad_spatial(x, geo, _lowest(x.dtype))
        y = np.empty(shape, x.dtype)
        want_idx = node.num_outputs > 1
        best = np.zeros(shape, np.int64) if want_idx else None
        offsets = []
        for t, (offs, view) in enumerate(window_taps(xp, geo)):
            offsets.append(offs)
            if t == 0:
                np.copyto(y, view)
            elif want_idx:
                better = view > y  # strict: the first maximal tap wins
                np.copyto(y, view, where=better)
                np.copyto(best, t, where=better)
            else:
                np.maximum(y, view, out=y)
    if not want_idx:
        return y
    nd = len(geo.kernel)
    spatial = x.shape[2:]
    if attrs.get("storage_order", 0):  # column-major over the spatial axes
        strides = np.cumprod((1,) + spatial[:-1])
    else:
        strides = np.cumprod((1,) + spatial[::-1][:-1])[::-1]
    offsets = np.asarray(offsets, np.int64).reshape(-1, nd)
    idx = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape[:2] + (1,) * nd)
    idx = idx * int(np.prod(spatial))
    for i in range(nd):
        grid = (np.arange(geo.out[i]) * geo.strides[i]).reshape((-1,) + (1,) * (nd - 1 - i))
        pos = grid + offsets[best, i] * geo.dilations[i] - geo.pads_begin[i]
        idx = idx + pos * int(strides[i])
    return y, idx


@kernel("AveragePool")
def average_pool(inputs, attrs, node):
    x = inputs[0]
    geo = _geometry(x, attrs)
    acc = acc_dtype(x.dtype)
    with np.errstate(all="ignore"):
        xp = pad_spatial(x, geo, 0, acc)
        s = _window_sum(xp, geo, acc, x.shape[:2] + geo.out)
        div = _divisor(x.shape[2:], geo, bool(attrs.get("count_include_pad", 0)))
        return (s / div.astype(acc)).astype(x.dtype, copy=False)


@kernel("LpPool")
def lp_pool(inputs, attrs, node):
    x = inputs[0]
    p = attrs.get("p", 2)
    geo = _geometry(x, attrs)
    acc = acc_dtype(x.dtype)
    with np.errstate(all="ignore"):
        xp = pad_spatial(np.abs(x.astype(acc)) ** p, geo, 0, acc)
        s = _window_sum(xp, geo, acc, x.shape[:2] + geo.out)
        return (s ** (1.0 / p)).astype(x.dtype, copy=False)


def _spatial_axes(x):
    return tuple(range(2, x.ndim))


@kernel("GlobalAveragePool")
def global_average_pool(inputs, attrs, node):
    x = inputs[0]
    with np.errstate(all="ignore"):
        s = np.sum(x, axis=_spatial_axes(x), keepdims=True, dtype=acc_dtype(x.dtype))
        return (s / max(1, int(np.prod(x.shape[2:])))).astype(x.dtype)


@kernel("QGlobalAveragePool", domain="workbench")
def quantized_global_average_pool(inputs, attrs, node):
    """Exact emulation of the int8 kernels (ir/fused/pool.py): integer sum, one float32 factor."""
    x, multiplier = inputs[0], inputs[1]
    count = np.float32(max(1, int(np.prod(x.shape[2:]))))
    acc = np.sum(x, axis=_spatial_axes(x), keepdims=True, dtype=np.int64)
    v = acc.astype(np.float32) * (np.float32(np.asarray(multiplier).reshape(())) / count)
    return np.clip(np.rint(v), -128, 127).astype(np.int8)


@kernel("GlobalMaxPool")
def global_max_pool(inputs, attrs, node):
    x = inputs[0]
    return np.max(x, axis=_spatial_axes(x), keepdims=True)


@kernel("GlobalLpPool")
def global_lp_pool(inputs, attrs, node):
    x = inputs[0]
    p = attrs.get("p", 2)
    with np.errstate(all="ignore"):
        s = np.sum(np.abs(x.astype(acc_dtype(x.dtype))) ** p, axis=_spatial_axes(x), keepdims=True)
        return (s ** (1.0 / p)).astype(x.dtype)


@kernel("LRN")
def lrn(inputs, attrs, node):
    x = inputs[0]
    size = int(attrs["size"])
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    acc = acc_dtype(x.dtype)
    with np.errstate(all="ignore"):
        sq = x.astype(acc) ** 2
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # channels before / after c
        c = x.shape[1]
        padded = np.zeros((x.shape[0], c + size - 1) + x.shape[2:], acc)
        padded[:, lo:lo + c] = sq
        total = np.zeros_like(sq)
        for k in range(size):
            total += padded[:, k:k + c]
        y = x / (bias + (alpha / size) * total) ** beta
        return y.astype(x.dtype, copy=False)


@kernel("MaxUnpool")
def max_unpool(inputs, attrs, node):
    x, idx = inputs[0], inputs[1]
    nd = x.ndim - 2
    strides = attrs.get("strides") or [1] * nd
    pads = attrs.get("pads") or [0] * (2 * nd)
    # indices address the inferred (un-padded pool input) shape; output_shape only pads it
    kernel_ = attrs["kernel_shape"]
    inferred = x.shape[:2] + tuple((i - 1) * s + k - pads[d] - pads[nd + d]
                                   for d, (i, s, k) in enumerate(zip(x.shape[2:], strides, kernel_)))
    y = np.zeros(int(np.prod(inferred)), x.dtype)
    y[idx.reshape(-1)] = x.reshape(-1)
    y = y.reshape(inferred)
    if len(inputs) > 2 and inputs[2] is not None:
        out = np.zeros(tuple(int(d) for d in inputs[2]), x.dtype)
        out[tuple(slice(0, i) for i in inferred)] = y
        y = out
    return y
