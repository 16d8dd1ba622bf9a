"""The fused epilogue of GEMM and convolution tactics, as the kernels (kernels/epilogue.cuh) and
library sources take it: an activation code and its two float parameters."""
from __future__ import annotations

from workbench.backends.base import Layer

__all__ = ["ACTIVATION_CODES", "activation_of"]

ACTIVATION_CODES = {"": 0, "Relu": 1, "Clip": 2, "LeakyRelu": 3, "Sigmoid": 4, "Tanh": 5, "SiLU": 6,
                    "HardSwish": 7, "Gelu": 8, "GeluTanh": 9}


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
