"""CPU kernel of workbench::FusedGemm: the Gemm or MatMul, bias Add, residual Add and activation
kernels the unfused graph would run, in the same order, so fusion never changes the numbers."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.ops.fused_conv import apply_activation
from workbench.backends.cpu.registry import NodeInfo, kernel, lookup

_INFO = NodeInfo(17)


@kernel("FusedGemm", domain="workbench")
def fused_gemm(inputs, attrs, node):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    residual = inputs[3] if len(inputs) > 3 else None
    gemm_attrs = {k: attrs[k] for k in ("transA", "transB", "alpha", "beta") if k in attrs}
    plain = not gemm_attrs.get("transA", 0) and not gemm_attrs.get("transB", 0) \
        and gemm_attrs.get("alpha", 1.0) == 1.0
    if attrs.get("epilogue_bias", 0) or c is None:
        # Gemm without C computes exactly what MatMul does when nothing is transposed or scaled.
        y = lookup("", "MatMul")([a, b], {}, _INFO) if plain else lookup("", "Gemm")([a, b], gemm_attrs, _INFO)
        if c is not None:
            y = lookup("", "Add")([y, c], {}, _INFO)
    else:
        y = lookup("", "Gemm")([a, b, c], gemm_attrs, _INFO)
    if residual is not None:
        y = lookup("", "Add")([y, residual], {}, _INFO)
    name, params = attrs.get("activation", ""), list(attrs.get("activation_params", []))
    if name == "Gelu":
        gelu = lookup("", "Gelu")
        return gelu([y], {"approximate": "tanh" if params and params[0] else "none"}, _INFO)
    return apply_activation(y, name, params, 17)
