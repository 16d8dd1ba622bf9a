"""What the INT8 layer rewrites (int8_fusion.py, int8_gemm.py, layout.py's quantizing reformat) read
off a layer list: who produces and who reads each tensor, and the scales of Q/DQ layers."""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer

__all__ = ["LayerGraph", "per_tensor_scale", "qdq_scale", "weight_scales", "rename", "STANDARD"]

STANDARD = ("", "ai.onnx")


class LayerGraph:
    """Producer and readers of every tensor of a layer list; rebuild it after each rewrite."""

    def __init__(self, layers: list[Layer], outputs: set[str]):
        self.layers, self.outputs = layers, outputs
        self.producer = {n: layer for layer in layers for n in layer.outputs if n}
        self.readers: dict[str, list[Layer]] = {}
        for layer in layers:
            for name in dict.fromkeys(n for n in layer.inputs if n):
                self.readers.setdefault(name, []).append(layer)

    def produced_by(self, tensor: str, op: str) -> Layer | None:
        layer = self.producer.get(tensor)
        return layer if layer is not None and layer.op == op and layer.domain in STANDARD else None

    def shape(self, tensor: str) -> tuple | None:
        layer = self.producer.get(tensor)
        if layer is None or tensor not in layer.outputs:
            return None
        shapes = layer.output_shapes
        index = layer.outputs.index(tensor)
        return tuple(shapes[index]) if index < len(shapes) and shapes[index] is not None else None


def per_tensor_scale(weights: dict, scale: str, zero_point: str | None) -> float | None:
    """The scale of a symmetric per-tensor int8 Q/DQ, or None if it is anything else."""
    s = weights.get(scale)
    z = weights.get(zero_point) if zero_point else None      # no zero point: ONNX quantizes to uint8
    if s is None or s.size != 1 or not np.isfinite(s).all() or float(s.reshape(())) <= 0:
        return None
    if z is None or z.dtype != np.int8 or np.any(z != 0):
        return None
    return float(s.reshape(()))


def qdq_scale(layer: Layer, weights: dict) -> float | None:
    """`per_tensor_scale` of a QuantizeLinear/DequantizeLinear layer's scale and zero point."""
    inputs = layer.inputs + ["", ""]
    return per_tensor_scale(weights, inputs[1], inputs[2])


def weight_scales(dq: Layer, weights: dict, axis: int = 0) -> np.ndarray | None:
    """float64 scales, one per slice along `axis`, of an int8 weight's DequantizeLinear: quantized per
    channel along that axis or per tensor, zero points 0; None for anything else."""
    q = weights.get(dq.inputs[0])
    inputs = dq.inputs + ["", ""]
    s, z = weights.get(inputs[1]), weights.get(inputs[2]) if inputs[2] else None
    if q is None or q.dtype != np.int8 or s is None or z is None or z.dtype != np.int8 or np.any(z != 0):
        return None
    if s.size == 1:
        return np.full(q.shape[axis], float(s.reshape(())), np.float64)
    if s.ndim != 1 or s.size != q.shape[axis] or int(dq.attrs.get("axis", 1)) % q.ndim != axis:
        return None
    return s.astype(np.float64)


def rename(layers: list[Layer], mapping: dict[str, str]) -> None:
    """Make every layer read mapping[name] where it read name."""
    if mapping:
        for layer in layers:
            layer.inputs = [mapping.get(n, n) for n in layer.inputs]
