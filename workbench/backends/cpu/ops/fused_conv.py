"""CPU kernel of workbench::FusedConv: the same Conv, residual add and activation kernels the
unfused graph would run, applied in the same order, so fusion never changes the numbers."""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import NodeInfo, kernel, lookup

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def apply_activation(y: np.ndarray, name: str, params: list[float], opset: int) -> np.ndarray:
    """Run the named activation with the registered CPU kernel (shared with the GEMM epilogue)."""
    if not name:
        return y
    info = NodeInfo(opset)
    if name == "SiLU":
        return y * lookup("", "Sigmoid")([y], {}, info)
    if name == "Clip":
        low, high = (np.asarray(p, dtype=y.dtype) for p in params)
        return lookup("", "Clip")([y, low, high], {}, NodeInfo(max(opset, 11)))
    attrs = {"alpha": params[0]} if name == "LeakyRelu" and params else {}
    return lookup("", name)([y], attrs, info)


@kernel("FusedConv", domain="workbench")
def fused_conv(inputs, attrs, node):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    residual = inputs[3] if len(inputs) > 3 else None
    conv_attrs = {k: v for k, v in attrs.items() if k in _CONV_ATTRS}
    y = lookup("", "Conv")([x, w] + ([bias] if bias is not None else []), conv_attrs, NodeInfo(17))
    if residual is not None:
        y = y + residual
    return apply_activation(y, attrs.get("activation", ""), list(attrs.get("activation_params", [])), 17)
