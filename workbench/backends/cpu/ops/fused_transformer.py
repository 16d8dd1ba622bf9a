"""CPU kernels of workbench::FusedLayerNorm, FusedGelu and FusedAttention: the registered standard kernels the
unfused graph would run, in the same order, so fusion only changes float rounding."""
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
    if not attrs.get("k_transposed", 0):
        k = np.swapaxes(k, -1, -2)
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
