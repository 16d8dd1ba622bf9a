"""Convolutions and matrix products (float, integer and QLinear variants).

Conv is im2col: each kernel tap is a strided view of the padded input, the taps are copied into
one column buffer and a single (batched over groups) matmul does the reduction, so the heavy
lifting is BLAS. Depthwise conv skips the matmul and accumulates over taps with broadcasting.
The window helpers here (`window_geometry`, `pad_spatial`, `window_taps`) are shared with the
pooling kernels so all sliding-window ops agree on pads, ceil_mode, dilations and auto_pad.
Half-precision inputs accumulate in float32 and round once at the output (like fp32-accumulate GPU
kernels); integer ops accumulate exactly in float64 (products of <=16-bit integers sum exactly).
"""
from __future__ import annotations

import contextvars
import dataclasses
import itertools

import numpy as np

from workbench.backends.cpu.ops.quantize import requantize
from workbench.backends.cpu.registry import kernel

_COL_BUDGET = 1 << 24  # im2col elements per batch chunk (64 MiB of fp32)


def acc_dtype(dt) -> np.dtype:
    """Accumulation dtype: float32 for half/bfloat16/float8, else the dtype itself."""
    dt = np.dtype(dt)
    if dt in (np.float32, np.float64) or dt.kind in "iub":
        return dt
    return np.dtype(np.float32)


# False inside the CPU backend's "blas.sgemm" tactic: float32 BLAS, several times faster than the
# oracle's float64 accumulation and within fp32 tolerance of it (a context variable, so threads and
# concurrent contexts each see their own setting)
ACCUMULATE_F64: contextvars.ContextVar[bool] = contextvars.ContextVar("accumulate_f64", default=True)


def dot_dtype(dt) -> np.dtype:
    """Accumulation dtype of Conv/MatMul/Gemm reductions: float64 for float32 inputs, so the oracle's
    rounding error does not grow with depth (K-long float32 sums differ by ~sqrt(K)*eps between two
    orders of summation, which over 50 layers reaches 1e-5); half types accumulate in float32 like
    GPU tensor cores; the output is rounded once to the input dtype."""
    dt = np.dtype(dt)
    return np.dtype(np.float64) if dt == np.float32 and ACCUMULATE_F64.get() else acc_dtype(dt)


@dataclasses.dataclass(frozen=True)
class Geometry:
    kernel: tuple
    strides: tuple
    dilations: tuple
    pads_begin: tuple
    pads_end: tuple
    out: tuple

    @property
    def eff_kernel(self) -> tuple:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))


def window_geometry(in_shape, kernel, attrs, ceil_mode: bool = False, pool: bool = False) -> Geometry:
    """Output size and begin/end pads of a sliding window op (Conv and every pool).

    SAME pads of pools may be negative (kernel < stride crops the input), as in onnxruntime."""
    nd = len(kernel)
    strides = tuple(attrs.get("strides") or [1] * nd)
    dil = tuple(attrs.get("dilations") or [1] * nd)
    ek = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(in_shape, strides)]
        total = [(o - 1) * s + e - i for o, s, e, i in zip(out, strides, ek, in_shape)]
        total = [t if pool else max(0, t) for t in total]
        head = [int(t / 2) if auto == "SAME_UPPER" else int((t + 1) / 2) for t in total]
        pb, pe = head, [t - h for t, h in zip(total, head)]
    elif auto == "VALID":
        pb = pe = [0] * nd
        out = [max(0, (i - e) // s + 1) for i, e, s in zip(in_shape, ek, strides)]
    else:
        pads = list(attrs.get("pads") or [0] * (2 * nd))
        pb, pe = pads[:nd], pads[nd:]
        out = []
        for i, s, e, b, a in zip(in_shape, strides, ek, pb, pe):
            span = i + b + a - e
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= i + b:  # last window must start inside input/left pad
                o -= 1
            out.append(max(0, o))
    return Geometry(tuple(kernel), strides, dil, tuple(pb), tuple(pe), tuple(out))


def pad_spatial(x: np.ndarray, geo: Geometry, value=0, dtype=None, channels_last=False) -> np.ndarray:
    """Pad the spatial axes (trailing, or before the last one when channels_last) so every window
    of `geo` fits (covers ceil_mode overhang); negative begin pads crop."""
    nd = len(geo.kernel)
    spatial = x.shape[-nd - 1:-1] if channels_last else x.shape[-nd:]
    need = [(o - 1) * s + e if o > 0 else 0 for o, s, e in zip(geo.out, geo.strides, geo.eff_kernel)]
    size = [max(b + i + a, n, 0) for b, i, a, n in zip(geo.pads_begin, spatial, geo.pads_end, need)]
    dtype = np.dtype(dtype or x.dtype)
    if tuple(size) == tuple(spatial) and not any(geo.pads_begin) and dtype == x.dtype:
        return x
    lead, tail = (x.shape[:-nd - 1], x.shape[-1:]) if channels_last else (x.shape[:-nd], ())
    out = np.full(lead + tuple(size) + tail, value, dtype=dtype)
    src, dst = [], []
    for b, i, n in zip(geo.pads_begin, spatial, size):
        lo, hi = max(0, b), min(n, b + i)
        src.append(slice(lo - b, max(lo, hi) - b))
        dst.append(slice(lo, max(lo, hi)))
    pre = (slice(None),) * len(lead)
    out[pre + tuple(dst)] = x[pre + tuple(src)]
    return out


def window_taps(xp: np.ndarray, geo: Geometry):
    """Yield (tap offsets, strided view of xp with the output's spatial shape) per kernel tap."""
    for offs in itertools.product(*(range(k) for k in geo.kernel)):
        sl = tuple(slice(o * d, o * d + (n - 1) * s + 1, s) if n else slice(0, 0)
                   for o, d, s, n in zip(offs, geo.dilations, geo.strides, geo.out))
        yield offs, xp[(Ellipsis,) + sl]


def _taps_last(xl: np.ndarray, geo: Geometry):
    """window_taps for a channels-last array (N, *spatial, C)."""
    for offs, view in window_taps(np.moveaxis(xl, -1, 1), geo):
        yield offs, np.moveaxis(view, 1, -1)


def conv_nd(x: np.ndarray, w: np.ndarray, b, attrs, acc) -> np.ndarray:
    """N-D grouped convolution computed in dtype `acc`; returns (N, M, *out) in `acc`."""
    n, c = x.shape[:2]
    m = w.shape[0]
    group = int(attrs.get("group", 1))
    kernel = tuple(attrs.get("kernel_shape") or w.shape[2:])
    geo = window_geometry(x.shape[2:], kernel, attrs)
    y_shape = (n, m) + geo.out
    if x.size == 0 or w.size == 0 or 0 in geo.out:
        y = np.zeros(y_shape, acc)
        return y + b.astype(acc).reshape((1, m) + (1,) * len(kernel)) if b is not None and y.size else y
    cg, mg = c // group, m // group
    w = w.astype(acc, copy=False)
    p = int(np.prod(geo.out))
    if cg == 1 and group > 1:  # depthwise: channels-last so every tap op runs over long rows
        acc = acc_dtype(x.dtype)   # a few taps per output: float64 buys no accuracy here, only time
        w = w.astype(acc, copy=False)
        xl = np.ascontiguousarray(pad_spatial(np.moveaxis(x, 1, -1), geo, 0, acc, channels_last=True))
        if mg > 1:
            xl = np.repeat(xl, mg, axis=-1)
        wt = w.reshape(m, -1)
        yl = np.empty((n,) + geo.out + (m,), acc)
        tmp = np.empty_like(yl)
        for t, (_, view) in enumerate(_taps_last(xl, geo)):
            np.multiply(view, wt[:, t], out=yl if t == 0 else tmp)
            if t:
                yl += tmp
        y = np.ascontiguousarray(np.moveaxis(yl, -1, 1))
    else:
        xp = pad_spatial(x, geo, 0, acc)
        ntaps = int(np.prod(kernel))
        wg = w.reshape(group, mg, cg * ntaps)
        y = np.empty((n, group, mg, p), acc)
        trivial = ntaps == 1 and all(s == 1 for s in geo.strides) and xp.shape[2:] == geo.out
        chunk = max(1, _COL_BUDGET // max(1, c * ntaps * p))
        for i in range(0, n, chunk):
            xs = xp[i:i + chunk]
            if trivial:
                cols = xs.reshape(xs.shape[0], group, cg, p)
            else:
                cols = np.empty((xs.shape[0], c, ntaps) + geo.out, acc)
                for t, (_, view) in enumerate(window_taps(xs, geo)):
                    cols[:, :, t] = view
                cols = cols.reshape(xs.shape[0], group, cg * ntaps, p)
            if group == 1:
                np.matmul(wg[0], cols[:, 0], out=y[i:i + chunk, 0])
            else:
                np.matmul(wg, cols, out=y[i:i + chunk])
        y = y.reshape(y_shape)
    if b is not None:
        y += b.astype(acc).reshape((1, m) + (1,) * len(kernel))
    return y


@kernel("Conv")
def conv(inputs, attrs, node):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    with np.errstate(all="ignore"):
        return conv_nd(x, w, b, attrs, dot_dtype(x.dtype)).astype(x.dtype, copy=False)


def _along(v, axis: int, ndim: int):
    """A scalar-or-1-D quantization parameter, broadcastable along `axis` of an ndim-D tensor."""
    if v is None:
        return None
    v = np.asarray(v)
    if v.ndim == 1 and v.size > 1:
        v = v.reshape([v.size if i == axis else 1 for i in range(ndim)])
    return v


def _shift(v: np.ndarray, zp) -> np.ndarray:
    """v - zero_point as exact float64 integers."""
    return v.astype(np.float64) if zp is None else v.astype(np.float64) - zp.astype(np.float64)


@kernel("ConvInteger")
def conv_integer(inputs, attrs, node):
    x, w = inputs[0], inputs[1]
    xz = inputs[2] if len(inputs) > 2 else None
    wz = inputs[3] if len(inputs) > 3 else None
    y = conv_nd(_shift(x, _along(xz, 1, x.ndim)), _shift(w, _along(wz, 0, w.ndim)), None, attrs, np.float64)
    return y.astype(np.int32)


@kernel("QLinearConv")
def qlinear_conv(inputs, attrs, node):
    x, xs, xz, w, ws, wz, ys, yz = inputs[:8]
    b = inputs[8] if len(inputs) > 8 else None
    acc = conv_nd(_shift(x, _along(xz, 1, x.ndim)), _shift(w, _along(wz, 0, w.ndim)), b, attrs, np.float64)
    factor = np.asarray(xs) * _along(ws, 1, x.ndim) / np.asarray(ys)
    return requantize(acc, factor, yz, yz.dtype if yz is not None else x.dtype)


@kernel("ConvTranspose")
def conv_transpose(inputs, attrs, node):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    acc = dot_dtype(x.dtype)
    n, c = x.shape[:2]
    group = int(attrs.get("group", 1))
    cg, mg = c // group, w.shape[1]
    m = mg * group
    kernel_ = tuple(attrs.get("kernel_shape") or w.shape[2:])
    nd = len(kernel_)
    ins = x.shape[2:]
    strides = list(attrs.get("strides") or [1] * nd)
    dil = list(attrs.get("dilations") or [1] * nd)
    opad = list(attrs.get("output_padding") or [0] * nd)
    full = [s * (i - 1) + (k - 1) * d + 1 for s, i, k, d in zip(strides, ins, kernel_, dil)]
    auto = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    out_shape = attrs.get("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        out = list(out_shape)[-nd:] if out_shape is not None else [i * s for i, s in zip(ins, strides)]
        total = [f + p - o for f, p, o in zip(full, opad, out)]
        if auto == "SAME_UPPER":
            pb = [t // 2 for t in total]
        else:
            pb = [t - t // 2 for t in total]
    else:
        pads = list(attrs.get("pads") or [0] * (2 * nd))
        pb = pads[:nd]
        out = [f + p - a - e for f, p, a, e in zip(full, opad, pads[:nd], pads[nd:])]
    with np.errstate(all="ignore"):
        # cols[n, g, mg*taps, pixels] = W_g^T @ X_g, then scatter-add each tap (col2im)
        npix, ntaps = int(np.prod(ins)), int(np.prod(kernel_))
        xg = x.astype(acc, copy=False).reshape(n, group, cg, npix)
        wg = w.astype(acc, copy=False).reshape(group, cg, mg * ntaps).transpose(0, 2, 1)
        cols = np.matmul(wg, xg).reshape((n, m, ntaps) + tuple(ins))
        buf = np.zeros((n, m) + tuple(f + max(0, p) for f, p in zip(full, opad)), acc)
        for t, offs in enumerate(itertools.product(*(range(k) for k in kernel_))):
            sl = tuple(slice(o * d, o * d + (i - 1) * s + 1, s)
                       for o, d, s, i in zip(offs, dil, strides, ins))
            buf[(slice(None), slice(None)) + sl] += cols[:, :, t]
        y = np.zeros((n, m) + tuple(out), acc)
        src, dst = [], []
        for p, o, f in zip(pb, out, buf.shape[2:]):
            lo, hi = max(p, 0), min(f, p + o)
            src.append(slice(lo, max(lo, hi)))
            dst.append(slice(lo - p, lo - p + max(0, hi - lo)))
        y[(Ellipsis,) + tuple(dst)] = buf[(Ellipsis,) + tuple(src)]
        if b is not None:
            y += b.astype(acc).reshape((1, m) + (1,) * nd)
    return y.astype(x.dtype, copy=False)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    acc = dot_dtype(np.result_type(a.dtype, b.dtype))
    return np.matmul(a.astype(acc, copy=False), b.astype(acc, copy=False))


@kernel("MatMul")
def matmul(inputs, attrs, node):
    a, b = inputs[0], inputs[1]
    with np.errstate(all="ignore"):
        return np.asarray(_matmul(a, b)).astype(a.dtype, copy=False)


@kernel("Gemm")
def gemm(inputs, attrs, node):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    with np.errstate(all="ignore"):
        y = _matmul(a, b)
        if alpha != 1.0:
            y = y * np.asarray(alpha, y.dtype) if y.dtype.kind == "f" else (y * alpha).astype(y.dtype)
        if c is not None and beta != 0.0:
            cc = c.astype(y.dtype, copy=False)
            y = y + (cc if beta == 1.0 else cc * np.asarray(beta, y.dtype))
        return np.asarray(y).astype(a.dtype, copy=False)


def _int_matmul(a, az, b, bz) -> np.ndarray:
    """(A - a_zp) @ (B - b_zp) exactly; a_zp may be per row of A, b_zp per column of B."""
    return np.asarray(np.matmul(_shift(a, _along(az, max(0, a.ndim - 2), a.ndim)), _shift(b, bz)))


@kernel("MatMulInteger")
def matmul_integer(inputs, attrs, node):
    a, b = inputs[0], inputs[1]
    az = inputs[2] if len(inputs) > 2 else None
    bz = inputs[3] if len(inputs) > 3 else None
    return _int_matmul(a, az, b, bz).astype(np.int32)


@kernel("QLinearMatMul")
def qlinear_matmul(inputs, attrs, node):
    a, as_, az, b, bs, bz, ys, yz = inputs[:8]
    acc = _int_matmul(a, az, b, bz)
    factor = _along(as_, max(0, a.ndim - 2), a.ndim) * np.asarray(bs) / np.asarray(ys)
    return requantize(acc, factor, yz, yz.dtype if yz is not None else a.dtype)
