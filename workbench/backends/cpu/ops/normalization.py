"""Normalization ops: batch/instance/group/layer/RMS/Lp/mean-variance.

Statistics are computed in float32 at least (ONNX `stash_type` = 1, the default; float64 inputs
stay float64) and the result is rounded once to the input dtype, which is what fp16 GPU kernels
do as well. Variance is the mean squared deviation (not E[x^2] - E[x]^2) for stability.
"""
from __future__ import annotations

import numpy as np
from onnx.helper import tensor_dtype_to_np_dtype

from workbench.backends.cpu.registry import kernel


def _stash(x: np.ndarray, attrs) -> np.dtype:
    if x.dtype == np.float64:
        return x.dtype
    code = attrs.get("stash_type", 1)
    dt = np.dtype(tensor_dtype_to_np_dtype(code)) if code else np.dtype(np.float32)
    return dt if dt.kind == "f" else np.dtype(np.float32)


def _channel(v, ndim, dtype):
    """Per-channel vector (C,) as a (1, C, 1, ...) array."""
    return np.asarray(v).astype(dtype).reshape((1, -1) + (1,) * (ndim - 2))


def _mean(x, axes):
    count = int(np.prod([x.shape[a] for a in np.atleast_1d(axes)]))
    return np.sum(x, axis=axes, keepdims=True) / max(count, 1)  # no "empty slice" warnings


def _moments(x, axes):
    mean = _mean(x, axes)
    return mean, _mean(np.square(x - mean), axes)


@kernel("BatchNormalization")
def batch_normalization(inputs, attrs, node):
    x, scale, bias, mean, var = inputs[:5]
    eps = attrs.get("epsilon", 1e-5)
    momentum = attrs.get("momentum", 0.9)
    # float64 inside, one rounding at the output: the folded Conv+BN then agrees to ~1 ulp per layer
    acc = np.float64 if x.dtype in (np.float32, np.float64) else np.float32
    training = attrs.get("training_mode", 0) if node.opset >= 14 else node.num_outputs > 1
    with np.errstate(all="ignore"):
        xf = x.astype(acc, copy=False)
        if training:
            axes = (0,) + tuple(range(2, x.ndim))
            bm, bv = _moments(xf, axes)
            bm, bv = bm.reshape(-1), bv.reshape(-1)
            run_mean = mean.astype(acc) * momentum + bm * (1 - momentum)
            run_var = var.astype(acc) * momentum + bv * (1 - momentum)
            mean, var = bm, bv
        a = scale.astype(acc) / np.sqrt(var.astype(acc) + acc(eps))
        b = bias.astype(acc) - mean.astype(acc) * a
        y = xf * _channel(a, x.ndim, acc)
        y += _channel(b, x.ndim, acc)
        y = y.astype(x.dtype, copy=False)
        if not training:
            return y
        outs = [y, run_mean.astype(x.dtype), run_var.astype(x.dtype)]
        if node.opset < 14:  # old training outputs: saved mean / saved variance
            outs += [bm.astype(x.dtype), bv.astype(x.dtype)]
        return outs[:max(1, node.num_outputs)]


@kernel("InstanceNormalization")
def instance_normalization(inputs, attrs, node):
    x, scale, bias = inputs[:3]
    acc = np.float64 if x.dtype == np.float64 else np.float32
    with np.errstate(all="ignore"):
        xf = x.astype(acc, copy=False)
        mean, var = _moments(xf, tuple(range(2, x.ndim)))
        y = (xf - mean) / np.sqrt(var + acc(attrs.get("epsilon", 1e-5)))
        y = y * _channel(scale, x.ndim, acc) + _channel(bias, x.ndim, acc)
        return y.astype(x.dtype)


@kernel("GroupNormalization")
def group_normalization(inputs, attrs, node):
    x, scale, bias = inputs[:3]
    g = int(attrs["num_groups"])
    n, c = x.shape[:2]
    acc = _stash(x, attrs)
    with np.errstate(all="ignore"):
        xg = x.astype(acc).reshape(n, g, -1)
        mean, var = _moments(xg, (2,))
        y = ((xg - mean) / np.sqrt(var + acc.type(attrs.get("epsilon", 1e-5)))).astype(x.dtype)
        y = y.reshape(x.shape)
        # opset 18 gave scale/bias per group, opset 21 per channel
        if np.size(scale) != c:
            scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
        out = y * _channel(scale, x.ndim, x.dtype) + _channel(bias, x.ndim, x.dtype)
        return out.astype(x.dtype)


def _norm_axes(x, attrs):
    axis = attrs.get("axis", -1) % max(1, x.ndim)
    return tuple(range(axis, x.ndim)), axis


@kernel("LayerNormalization")
def layer_normalization(inputs, attrs, node):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    acc = _stash(x, attrs)
    axes, _ = _norm_axes(x, attrs)
    with np.errstate(all="ignore"):
        xf = x.astype(acc, copy=False)
        mean, var = _moments(xf, axes)
        inv = 1 / np.sqrt(var + acc.type(attrs.get("epsilon", 1e-5)))
        y = (xf - mean) * inv * scale.astype(acc)
        if bias is not None:
            y = y + bias.astype(acc)
    if node.num_outputs <= 1:
        return y.astype(x.dtype)
    return [y.astype(x.dtype), mean, inv][:node.num_outputs]


@kernel("RMSNormalization")
def rms_normalization(inputs, attrs, node):
    x, scale = inputs[0], inputs[1]
    acc = _stash(x, attrs)
    axes, _ = _norm_axes(x, attrs)
    with np.errstate(all="ignore"):
        xf = x.astype(acc, copy=False)
        ms = _mean(np.square(xf), axes)
        y = xf / np.sqrt(ms + acc.type(attrs.get("epsilon", 1e-5))) * scale.astype(acc)
        return y.astype(x.dtype)


@kernel("LpNormalization")
def lp_normalization(inputs, attrs, node):
    x = inputs[0]
    p = attrs.get("p", 2)
    axis = attrs.get("axis", -1)
    acc = np.float64 if x.dtype == np.float64 else np.float32
    with np.errstate(all="ignore"):
        xf = x.astype(acc, copy=False)
        if p == 1:
            norm = np.sum(np.abs(xf), axis=axis, keepdims=True)
        else:
            norm = np.sqrt(np.sum(np.square(xf), axis=axis, keepdims=True))
        return np.divide(xf, norm, out=np.zeros_like(xf), where=norm != 0).astype(x.dtype)


@kernel("MeanVarianceNormalization")
def mean_variance_normalization(inputs, attrs, node):
    x = inputs[0]
    axes = tuple(attrs.get("axes", [0, 2, 3]))
    acc = np.float64 if x.dtype == np.float64 else np.float32
    with np.errstate(all="ignore"):
        xf = x.astype(acc, copy=False)
        mean, var = _moments(xf, axes)
        return ((xf - mean) / (np.sqrt(var) + acc(1e-9))).astype(x.dtype)
