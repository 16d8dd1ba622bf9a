"""Shape-manipulation kernels: ops that move, copy or resample data without arithmetic on it
(Reshape, Transpose, Slice, Concat, Pad, Resize, ...).

They keep the input dtype (float16, bfloat16, ints, bool, strings) and return numpy views where
numpy gives one (reshape, transpose, basic slicing): the runtime never writes into a kernel's
output, so aliasing is safe. Resize is separable: it resamples one axis at a time with
precomputed taps (index, weight), matching onnx's reference (float32 math for <=32-bit floats,
as onnxruntime does). Small helpers (`ints`, `norm_axis`) are shared with indexing.py.
"""
from __future__ import annotations

import math

import numpy as np

from workbench.backends.cpu.registry import kernel


def ints(v) -> list[int]:
    """A 0-d/1-d tensor or list of ints as a Python list."""
    return [int(i) for i in np.asarray(v).reshape(-1)]


def norm_axis(axis: int, rank: int) -> int:
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _opt(inputs, i):
    return inputs[i] if len(inputs) > i and inputs[i] is not None else None


def _axes_arg(inputs, attrs, node, i=1, since=13):
    """`axes` as an attribute before opset `since`, an optional input `i` from it."""
    if node.opset < since:
        return attrs.get("axes")
    v = _opt(inputs, i)
    return None if v is None else ints(v)


@kernel("Shape")
def shape_(inputs, attrs, node):
    shp = inputs[0].shape
    return np.array(shp[attrs.get("start", 0):attrs.get("end", len(shp))], dtype=np.int64)


@kernel("Size")
def size_(inputs, attrs, node):
    return np.array(inputs[0].size, dtype=np.int64)


@kernel("Reshape")
def reshape(inputs, attrs, node):
    x = inputs[0]
    shape = ints(inputs[1]) if node.opset >= 5 else list(attrs["shape"])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@kernel("Flatten")
def flatten(inputs, attrs, node):
    x = inputs[0]
    axis = attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@kernel("Transpose")
def transpose(inputs, attrs, node):
    perm = attrs.get("perm")
    return np.transpose(inputs[0], None if perm is None else [int(p) for p in perm])


@kernel("Squeeze")
def squeeze(inputs, attrs, node):
    x = inputs[0]
    axes = _axes_arg(inputs, attrs, node)
    if not axes:  # absent (or empty, as onnxruntime reads it): drop every 1-sized dim
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(norm_axis(a, x.ndim) for a in axes))


@kernel("Unsqueeze")
def unsqueeze(inputs, attrs, node):
    x = inputs[0]
    axes = _axes_arg(inputs, attrs, node)
    out_rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(norm_axis(a, out_rank) for a in axes))


@kernel("Concat")
def concat(inputs, attrs, node):
    xs = [x for x in inputs if x is not None]
    return np.concatenate(xs, axis=norm_axis(attrs.get("axis", 1 if node.opset < 4 else 0), xs[0].ndim))


@kernel("Split")
def split(inputs, attrs, node):
    x = inputs[0]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    dim = x.shape[axis]
    sizes = _opt(inputs, 1)
    sizes = ints(sizes) if sizes is not None and sizes.size else attrs.get("split")
    if not sizes:
        n = attrs.get("num_outputs", node.num_outputs)
        chunk = -(-dim // n)  # ceil: the last chunk may be smaller (opset 18)
        sizes = [min(chunk, max(dim - i * chunk, 0)) for i in range(n)]
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def slice_indices(dim: int, start: int, end: int, step: int) -> slice:
    """ONNX Slice start/end (negative counts from the end, clamped) as a Python slice."""
    if step == 0:
        raise ValueError("Slice step cannot be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    start = min(max(start, -1), dim - 1)
    end = min(max(end, -1), dim - 1)
    if start < 0:
        return slice(0, 0)
    return slice(start, None if end < 0 else end, step)


@kernel("Slice")
def slice_(inputs, attrs, node):
    x = inputs[0]
    if node.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = ints(inputs[1]), ints(inputs[2])
        axes, steps = _opt(inputs, 3), _opt(inputs, 4)
        axes = None if axes is None else ints(axes)
        steps = None if steps is None else ints(steps)
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = norm_axis(a, x.ndim)
        index[a] = slice_indices(x.shape[a], int(s), int(e), int(st))
    return x[tuple(index)]


@kernel("Expand")
def expand(inputs, attrs, node):
    x = inputs[0]
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(ints(inputs[1])))).copy()


@kernel("Tile")
def tile(inputs, attrs, node):
    return np.tile(inputs[0], ints(inputs[1]))


@kernel("Pad")
def pad(inputs, attrs, node):
    x = inputs[0]
    mode = attrs.get("mode", "constant")
    if node.opset < 11:  # Pad-1 calls them `paddings`
        pads, value, axes = attrs.get("pads", attrs.get("paddings")), attrs.get("value", 0.0), None
    else:
        pads, value, axes = ints(inputs[1]), _opt(inputs, 2), _opt(inputs, 3)
        value = 0 if value is None or value.size == 0 else value.reshape(-1)[0]
        axes = None if axes is None else ints(axes)
    axes = list(range(x.ndim)) if axes is None else [norm_axis(a, x.ndim) for a in axes]
    width, crop = [(0, 0)] * x.ndim, [slice(None)] * x.ndim
    n = len(axes)
    for i, a in enumerate(axes):
        b, e = int(pads[i]), int(pads[n + i])
        width[a] = (max(b, 0), max(e, 0))
        crop[a] = slice(max(-b, 0), x.shape[a] - max(-e, 0))  # negative pads crop
    x = x[tuple(crop)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    return np.pad(x, width, mode=mode)


@kernel("DepthToSpace")
def depth_to_space(inputs, attrs, node):
    x = inputs[0]
    bs = attrs["blocksize"]
    b, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "DCR":
        y = x.reshape(b, bs, bs, c // (bs * bs), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(b, c // (bs * bs), bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(b, c // (bs * bs), h * bs, w * bs)


@kernel("SpaceToDepth")
def space_to_depth(inputs, attrs, node):
    x = inputs[0]
    bs = attrs["blocksize"]
    b, c, h, w = x.shape
    perm = (0, 3, 5, 1, 2, 4) if attrs.get("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    y = x.reshape(b, c, h // bs, bs, w // bs, bs).transpose(perm)
    return y.reshape(b, c * bs * bs, h // bs, w // bs)


@kernel("CenterCropPad")
def center_crop_pad(inputs, attrs, node):
    x = inputs[0]
    axes = attrs.get("axes")
    axes = range(x.ndim) if axes is None else [norm_axis(a, x.ndim) for a in axes]
    out_shape, src, dst = list(x.shape), [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for a, size in zip(axes, ints(inputs[1])):
        dim = x.shape[a]
        out_shape[a] = size
        if size < dim:
            src[a] = slice((dim - size) // 2, (dim - size) // 2 + size)
        elif size > dim:
            dst[a] = slice((size - dim) // 2, (size - dim) // 2 + dim)
    out = np.zeros(out_shape, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


# ---- Resize ------------------------------------------------------------------------------------

def _source_coords(ctm, n_in, n_out, scale, roi):
    """Output index -> input coordinate (float64), plus the extrapolation mask of
    tf_crop_and_resize. Mirrors onnx's reference, including its use of `scale * n_in` (not
    the integer output size) as the output length."""
    y = np.arange(n_out, dtype=np.float64)
    length = scale * n_in
    if ctm == "align_corners":
        return (np.zeros(n_out) if length == 1 else y * (n_in - 1) / (length - 1)), None
    if ctm == "asymmetric":
        return y / scale, None
    if ctm == "tf_crop_and_resize":
        lo, hi = roi
        x = (np.full(n_out, (hi - lo) * (n_in - 1) / 2) if length == 1
             else y * (hi - lo) * (n_in - 1) / (length - 1)) + lo * (n_in - 1)
        return x, (x < 0) | (x > n_in - 1)
    if ctm == "pytorch_half_pixel" and length == 1:
        return np.full(n_out, -0.5), None
    if ctm in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        offset = n_in / 2 * (1 - n_out / length) if ctm == "half_pixel_symmetric" else 0.0
        return offset + (y + 0.5) / scale - 0.5, None
    if ctm == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale, None
    raise ValueError(f"Resize: unsupported coordinate_transformation_mode {ctm!r}")


_NEAREST = {
    "round_prefer_floor": lambda x, s: np.ceil(x - 0.5), "round_prefer_ceil": lambda x, s: np.floor(x + 0.5),
    "floor": lambda x, s: np.floor(x), "ceil": lambda x, s: np.ceil(x),
    "simple": lambda x, s: np.ceil(x) if s < 1 else np.floor(x),  # opset < 11, as onnxruntime
}


def _taps(x, mode, scale, a, antialias, exclude_outside, n_in):
    """(indices, weights), each (n_out, K), of linear/cubic interpolation at coordinates x."""
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)  # ratio in (0, 1]: prefer the left pixel
    base = x - ratio
    s = min(scale, 1.0) if antialias else 1.0  # antialias widens the kernel when downsampling
    i0 = int(math.floor((-1 if mode == "linear" else -2) / s)) + 1
    offs = np.arange(i0, 2 - i0)
    d = np.abs((offs[None, :] - ratio[:, None]) * s)
    if mode == "linear":
        w = np.clip(1 - d, 0, 1)
    else:  # Keys cubic kernel with coefficient a
        w = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1,
                     np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0.0))
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    idx = base.astype(np.int64)[:, None] + offs[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1), w


def _resize(x, out_size, scales, roi, attrs, opset):
    mode = attrs.get("mode", "nearest")
    ctm = attrs.get("coordinate_transformation_mode", "half_pixel" if opset >= 11 else "asymmetric")
    nearest_mode = attrs.get("nearest_mode", "round_prefer_floor" if opset >= 11 else "simple")
    extrap = attrs.get("extrapolation_value", 0.0)
    r = x.ndim
    # float32 math for <=32-bit floats (as onnxruntime); float64 for float64 and integers
    wide = np.float32 if x.dtype.kind == "f" and x.dtype.itemsize <= 4 or "bfloat16" in x.dtype.name \
        else np.float64
    y = x if mode == "nearest" else x.astype(wide)
    for ax in range(r):
        n_in, n_out, s = x.shape[ax], int(out_size[ax]), float(scales[ax])
        ax_roi = (0.0, 1.0) if roi is None else (float(roi[ax]), float(roi[ax + r]))
        if (n_out == n_in and math.isclose(s, 1.0) and math.isclose(ax_roi[0], 0.0)
                and math.isclose(ax_roi[1], 1.0)):
            continue
        if n_out == 0 or n_in == 0:
            y = np.zeros(y.shape[:ax] + (n_out,) + y.shape[ax + 1:], dtype=y.dtype)
            continue
        coords, outside = _source_coords(ctm, n_in, n_out, s, ax_roi)
        bshape = (n_out,) + (1,) * (r - ax - 1)
        if mode == "nearest":
            idx = np.clip(_NEAREST[nearest_mode](coords, s), 0, n_in - 1).astype(np.intp)
            y = np.take(y, idx, axis=ax)
        elif mode in ("linear", "cubic"):
            idx, w = _taps(coords, mode, s, attrs.get("cubic_coeff_a", -0.75),
                           attrs.get("antialias", 0), attrs.get("exclude_outside", 0), n_in)
            acc = np.zeros(y.shape[:ax] + (n_out,) + y.shape[ax + 1:], dtype=y.dtype)
            for k in range(idx.shape[1]):
                term = np.take(y, idx[:, k], axis=ax)
                term *= w[:, k].astype(y.dtype).reshape(bshape)
                acc += term
            y = acc
        else:
            raise ValueError(f"Resize: unsupported mode {mode!r}")
        if outside is not None and outside.any():
            y = np.where(outside.reshape(bshape), np.asarray(extrap).astype(y.dtype), y)
    if x.dtype.kind in "iu" and y.dtype != x.dtype:
        y = np.clip(np.round(y), np.iinfo(x.dtype).min, np.iinfo(x.dtype).max)
    return y.astype(x.dtype, copy=False)


@kernel("Resize")
def resize(inputs, attrs, node):
    x = inputs[0]
    r = x.ndim
    roi, scales, sizes = (None, _opt(inputs, 1), None) if node.opset < 11 else \
        (_opt(inputs, 1), _opt(inputs, 2), _opt(inputs, 3))
    roi = None if roi is None or roi.size == 0 else roi.astype(np.float64).reshape(-1)
    scales = None if scales is None or scales.size == 0 else [float(s) for s in scales.reshape(-1)]
    sizes = None if sizes is None or sizes.size == 0 else ints(sizes)
    axes = attrs.get("axes")
    axes = list(range(r)) if axes is None else [norm_axis(a, r) for a in axes]
    if roi is not None and len(axes) != r:
        full = np.array([0.0] * r + [1.0] * r)
        full[axes], full[[r + a for a in axes]] = roi[:len(axes)], roi[len(axes):]
        roi = full
    full_scales, out_size = [1.0] * r, list(x.shape)
    if sizes is not None:
        for a, n in zip(axes, sizes):
            out_size[a], full_scales[a] = n, n / x.shape[a] if x.shape[a] else 1.0
        policy = attrs.get("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = {"not_larger": min, "not_smaller": max}[policy]
            s = pick(full_scales[a] for a in axes)
            for a in axes:
                full_scales[a], out_size[a] = s, int(s * x.shape[a] + 0.5)
    else:
        for a, s in zip(axes, scales):
            full_scales[a], out_size[a] = s, int(math.floor(s * x.shape[a]))
    return _resize(x, out_size, full_scales, roi, attrs, node.opset)


@kernel("Upsample")
def upsample(inputs, attrs, node):
    x = inputs[0]
    scales = attrs["scales"] if node.opset < 9 else [float(s) for s in inputs[1].reshape(-1)]
    out_size = [int(math.floor(s * d)) for s, d in zip(scales, x.shape)]
    return _resize(x, out_size, scales, None, {"mode": attrs.get("mode", "nearest")}, 10)
