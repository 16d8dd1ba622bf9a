"""CPU kernels of workbench::FusedConv (the same Conv, residual add and activation kernels the
unfused graph would run, applied in the same order, so fusion never changes the numbers) and of
workbench::FusedQConv (INT8: exact integer accumulation, then the requantizing epilogue)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx.helper import tensor_dtype_to_np_dtype

from workbench.backends.cpu.ops.nn import conv_nd
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


@kernel("FusedQConv", domain="workbench")
def fused_qconv(inputs, attrs, node):
    """Exact emulation of the INT8 kernels: the integer sum exactly (float64 holds every partial sum
    of int8 products), then the epilogue in float32 in the GPU's order, rounded half to even."""
    x, w, multiplier = inputs[0], inputs[1], inputs[2]
    bias = inputs[3] if len(inputs) > 3 else None
    residual = inputs[4] if len(inputs) > 4 else None
    conv_attrs = {k: v for k, v in attrs.items() if k in _CONV_ATTRS}
    acc = conv_nd(x.astype(np.float64), w.astype(np.float64), None, conv_attrs, np.float64)
    channel = (1, -1) + (1,) * (acc.ndim - 2)
    v = acc.astype(np.float32) * np.asarray(multiplier, np.float32).reshape(channel)
    if bias is not None:
        v += np.asarray(bias, np.float32).reshape(channel)
    if residual is not None:
        v += residual.astype(np.float32) * np.float32(attrs.get("residual_scale", 1.0))
    v = apply_activation(v, attrs.get("activation", ""), list(attrs.get("activation_params", [])), 17)
    code = attrs.get("output_dtype", onnx.TensorProto.INT8)
    if code == onnx.TensorProto.INT8:
        return np.clip(np.nan_to_num(np.rint(v), nan=0.0), -128, 127).astype(np.int8)
    return v.astype(tensor_dtype_to_np_dtype(code))
