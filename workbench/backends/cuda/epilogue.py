"""The fused epilogue of GEMM and convolution tactics, as the kernels (kernels/epilogue.cuh) and
library sources take it: an activation code and its two float parameters."""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer

__all__ = ["ACTIVATION_CODES", "INT8_ACTIVATIONS", "activation_of", "int8_clamp"]

ACTIVATION_CODES = {"": 0, "Relu": 1, "Clip": 2, "LeakyRelu": 3, "Sigmoid": 4, "Tanh": 5, "SiLU": 6,
                    "HardSwish": 7, "Gelu": 8, "GeluTanh": 9}
# the activations the int8 kernels' epilogue takes (kernels/int8_mma.cuh)
INT8_ACTIVATIONS = tuple(ACTIVATION_CODES[name] for name in ("", "Relu", "Clip", "LeakyRelu"))


def activation_of(layer: Layer) -> tuple[int, float, float]:
    """(code, p0, p1) of a FusedConv/FusedGemm layer's activation (0 for plain Conv/Gemm/MatMul)."""
    name = layer.attrs.get("activation", "") or ""
    params = [float(p) for p in layer.attrs.get("activation_params", []) or []]
    if name == "Gelu":
        name = "GeluTanh" if params and params[0] else "Gelu"
        params = []
    if name == "LeakyRelu" and not params:
        params = [0.01]
    if name not in ACTIVATION_CODES:
        raise ValueError(f"layer {layer.name!r}: activation {name!r} has no GPU epilogue")
    params = (params + [0.0, 0.0])[:2]
    return ACTIVATION_CODES[name], params[0], params[1]


def int8_clamp(layer: Layer) -> tuple:
    """The int8 kernels' epilogue arguments (kernels/int8_mma.cuh): (leaky, alpha, lo, hi), LeakyRelu's
    flag and slope, then one clamp that is the activation and the int8 saturation together, its
    bounds folded into [-128, 127] in float32 as the CPU has them. Other activations raise."""
    code, alpha, _ = activation_of(layer)
    if code not in INT8_ACTIVATIONS:
        raise ValueError(f"layer {layer.name!r}: the int8 kernels' epilogue has no {layer.attrs.get('activation')}")
    lo, hi = -128.0, 127.0
    if code == ACTIVATION_CODES["Relu"]:
        lo = 0.0
    elif code == ACTIVATION_CODES["Clip"]:           # absent bounds are open (ONNX Clip)
        params = [float(p) for p in layer.attrs.get("activation_params", []) or []]
        lo = params[0] if params else -np.inf
        hi = params[1] if len(params) > 1 else np.inf
    lo, hi = (np.clip(np.float32(v), np.float32(-128), np.float32(127)) for v in (lo, hi))
    return (np.int32(code == ACTIVATION_CODES["LeakyRelu"]), np.float32(alpha), np.float32(lo), np.float32(hi))
