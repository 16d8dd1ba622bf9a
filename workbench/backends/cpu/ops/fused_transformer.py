"""CPU kernels of workbench::FusedLayerNorm, FusedGelu and FusedAttention: the registered standard kernels the
unfused graph would run, in the same order, so fusion only changes float rounding.

With half-precision inputs the fused kernels do what a fused GPU kernel does, not what a chain of
half-precision ops would: LayerNorm takes its statistics in float32; attention keeps the scores
and the softmax in float32, rounds the probabilities to the input dtype for the second product
(a tensor-core operand) and accumulates that product in float32. So fp16 engines can run them in
fp16, and the CPU stays faithful to the GPU."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import NodeInfo, kernel, lookup

_INFO = NodeInfo(17)


@kernel("FusedLayerNorm", domain="workbench")
def layer_norm(inputs, attrs, node):
    """mean, x - mean, mean of squares, / sqrt(var + eps), * scale, + bias: the decomposed graph."""
    x = inputs[0]
    scale = inputs[1] if len(inputs) > 1 else None
    bias = inputs[2] if len(inputs) > 2 else None
    axes = list(range(attrs.get("axis", -1) % x.ndim, x.ndim))
    if x.dtype.itemsize < 4 and x.dtype.kind in "fV":
        return _layer_norm_f32(x, scale, bias, tuple(axes), float(attrs.get("epsilon", 1e-5)))
    mean = lookup("", "ReduceMean")
    with np.errstate(all="ignore"):
        d = x - mean([x], {"axes": axes}, _INFO)
        var = mean([d * d], {"axes": axes}, _INFO)
        y = d / np.sqrt(var + x.dtype.type(attrs.get("epsilon", 1e-5)))
        if scale is not None:
            y = y * scale.astype(x.dtype, copy=False)
        if bias is not None:
            y = y + bias.astype(x.dtype, copy=False)
    return np.asarray(y).astype(x.dtype, copy=False)


@kernel("FusedGelu", domain="workbench")
def gelu(inputs, attrs, node):
    return lookup("", "Gelu")([inputs[0]], {"approximate": attrs.get("approximate", "none")}, NodeInfo(20))


@kernel("FusedAttention", domain="workbench")
def attention(inputs, attrs, node):
    """softmax(scale * Q @ K^T + mask) @ V with the MatMul and Softmax kernels."""
    q, k, v = inputs[:3]
    mask = inputs[3] if len(inputs) > 3 else None
    if attrs.get("qkv_layout", "bhsd") == "bshd":        # [B, S, H, D] in and out: heads moved to axis 1 here
        heads = attention([np.swapaxes(a, 1, 2) for a in (q, k, v)] + ([mask] if mask is not None else []),
                          {**attrs, "qkv_layout": "bhsd"}, node)
        return np.ascontiguousarray(np.swapaxes(heads, 1, 2))
    if not attrs.get("k_transposed", 0):
        k = np.swapaxes(k, -1, -2)
    if q.dtype.itemsize < 4 and q.dtype.kind in "fV":
        return _attention_f32(q, k, v, mask, float(attrs.get("scale", 1.0)))
    matmul = lookup("", "MatMul")
    scores = matmul([q, k], {}, _INFO)
    with np.errstate(all="ignore"):
        scale = attrs.get("scale", 1.0)
        if scale != 1.0:
            scores = scores * scores.dtype.type(scale)
        if mask is not None:
            scores = scores + mask.astype(scores.dtype, copy=False)
    probs = lookup("", "Softmax")([np.asarray(scores)], {"axis": -1}, _INFO)
    return matmul([probs, v], {}, _INFO)


def _layer_norm_f32(x, scale, bias, axes, epsilon):
    f = np.float32
    xf = x.astype(f)
    with np.errstate(all="ignore"):
        d = xf - xf.mean(axis=axes, keepdims=True, dtype=np.float64).astype(f)
        var = (d * d).mean(axis=axes, keepdims=True, dtype=np.float64).astype(f)
        y = d / np.sqrt(var + f(epsilon))
        if scale is not None:
            y = y * scale.astype(f)
        if bias is not None:
            y = y + bias.astype(f)
    return y.astype(x.dtype)


def _attention_f32(q, k, v, mask, scale):
    f = np.float32
    with np.errstate(all="ignore"):
        scores = np.matmul(q.astype(np.float64), k.astype(np.float64)).astype(f)
        if scale != 1.0:
            scores = scores * f(scale)
        if mask is not None:
            scores = scores + mask.astype(f)
        scores = scores - scores.max(axis=-1, keepdims=True)
        e = np.exp(scores)
        probs = (e / e.sum(axis=-1, keepdims=True, dtype=np.float64).astype(f)).astype(q.dtype)
        return np.matmul(probs.astype(np.float64), v.astype(np.float64)).astype(f).astype(q.dtype)
