"""Kernels that create tensors from attributes or shapes: Constant, ConstantOfShape, Range,
EyeLike, OneHot, Trilu (a mask generator applied to its input)."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import kernel
from workbench.ir.dtypes import np_dtype

_CONSTANT_ATTRS = {
    "value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
    "value_ints": np.int64, "value_string": object, "value_strings": object,
}


@kernel("Constant")
def constant(inputs, attrs, node):
    if "value" in attrs:
        return np.asarray(attrs["value"])
    for name, dt in _CONSTANT_ATTRS.items():
        if name in attrs:
            return np.array(attrs[name], dtype=dt)
    raise NotImplementedError(f"Constant {node.name!r}: unsupported attributes {sorted(attrs)}")


@kernel("ConstantOfShape")
def constant_of_shape(inputs, attrs, node):
    value = np.asarray(attrs.get("value", np.zeros(1, dtype=np.float32)))
    shape = tuple(int(d) for d in np.asarray(inputs[0]).reshape(-1))
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


@kernel("Range")
def range_(inputs, attrs, node):
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs)
    # n = max(ceil((limit - start) / delta), 0); y[i] = start + i * delta
    n = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    with np.errstate(all="ignore"):
        return (start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)


@kernel("EyeLike")
def eye_like(inputs, attrs, node):
    x = inputs[0]
    dt = np_dtype(attrs["dtype"]) if "dtype" in attrs else x.dtype
    return np.eye(x.shape[0], x.shape[1], k=attrs.get("k", 0), dtype=dt)


@kernel("OneHot")
def one_hot(inputs, attrs, node):
    indices, depth, values = inputs
    depth = int(np.asarray(depth).reshape(-1)[0])
    off, on = np.asarray(values).reshape(-1)[:2]
    axis = attrs.get("axis", -1) % (indices.ndim + 1)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)  # negative indices count from the end
    shape = [1] * (indices.ndim + 1)
    shape[axis] = depth
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape(shape)
    return np.where(hot, on, off).astype(values.dtype)


@kernel("Trilu")
def trilu(inputs, attrs, node):
    x = inputs[0]
    k = int(np.asarray(inputs[1]).reshape(-1)[0]) if len(inputs) > 1 and inputs[1] is not None else 0
    return (np.triu if attrs.get("upper", 1) else np.tril)(x, k)
