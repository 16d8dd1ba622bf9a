"""Shared by the convolution tactic tests: NHWC Conv/FusedConv layers, their random operands, and
the matrix of geometries every tactic is checked on against the CPU oracle."""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.nn import window_geometry

DT = {"fp32": np.float32, "tf32": np.float32, "fp16": np.float16}
PRECISIONS = ("fp32", "tf32", "fp16")
ACTIVATIONS = [("", []), ("Relu", []), ("Clip", [-0.5, 0.75]), ("LeakyRelu", [0.2]), ("Sigmoid", []),
               ("SiLU", []), ("HardSwish", [])]

# id -> (N, C, H, W, K, kernel, attrs): strides, pads, dilations, auto_pad, groups, odd sizes, C=3
SHAPES = {
    "3x3_pad1": (2, 16, 9, 11, 24, (3, 3), {"pads": [1, 1, 1, 1]}),
    "3x3_stride2": (2, 16, 13, 10, 32, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "1x1": (2, 32, 7, 9, 40, (1, 1), {}),
    "1x1_stride2": (2, 32, 9, 9, 16, (1, 1), {"strides": [2, 2]}),
    "7x7_stride2_c3": (2, 3, 23, 19, 16, (7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),
    "asymmetric_pads": (1, 8, 10, 10, 16, (3, 3), {"pads": [0, 1, 2, 1]}),
    "dilation2": (2, 16, 12, 12, 16, (3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    "batch1_odd": (1, 24, 5, 7, 8, (3, 3), {"pads": [1, 1, 1, 1]}),
    "same_upper_stride2": (1, 16, 9, 9, 16, (3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "valid": (2, 8, 8, 8, 8, (3, 3), {"auto_pad": "VALID"}),
    "rect_kernel": (2, 8, 9, 8, 16, (1, 3), {"pads": [0, 1, 0, 1]}),
    "odd_channels": (2, 5, 7, 7, 5, (3, 3), {"pads": [1, 1, 1, 1]}),
    "grouped": (2, 16, 8, 8, 32, (3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    "depthwise": (2, 24, 9, 9, 24, (3, 3), {"group": 24, "pads": [1, 1, 1, 1]}),
    "depthwise_stride2": (2, 32, 11, 11, 32, (3, 3), {"group": 32, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "depthwise_multiplier": (2, 8, 7, 7, 16, (3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
    # bigger: many K tiles through the cp.async ring, partial M and N tiles
    "resnet_3x3": (4, 64, 14, 14, 128, (3, 3), {"pads": [1, 1, 1, 1]}),
    "wide_k_1x1": (2, 32, 8, 8, 136, (1, 1), {}),
}


def shapes_where(predicate) -> list[str]:
    return [name for name, (n, c, h, w, k, kernel, attrs) in SHAPES.items()
            if predicate(c, k, kernel, attrs)]


def group_one(c, k, kernel, attrs) -> bool:
    return attrs.get("group", 1) == 1


def rand(rng, shape, precision, scale=0.5):
    return np.asarray(rng.standard_normal(shape) * scale).astype(DT[precision])


def conv_layer(precision: str, attrs: dict, *, bias=True, residual=False, activation=None, params=()) -> Layer:
    """Conv (no activation/residual) or, when either is asked for, FusedConv; NHWC."""
    fused = residual or activation is not None
    inputs = ["x", "w", "b" if bias else ""] + (["z"] if residual else [])
    if not fused and not bias:
        inputs = ["x", "w"]
    attrs = dict(attrs)
    if fused:
        attrs.update(activation=activation or "", activation_params=list(params))
    return Layer(name="conv_test", op="FusedConv" if fused else "Conv", domain="workbench" if fused else "",
                 inputs=inputs, outputs=["y"], attrs=attrs, opset=17, precision=precision, layout="NHWC")


def conv_case(shape_id: str, precision: str, *, seed=0, bias=True, residual=False, activation=None, params=()):
    """(layer, weights, host inputs in layer.inputs order) for SHAPES[shape_id]; NHWC activations.
    The layer carries its output shape and dtype, as the builder's layers do."""
    n, c, h, w, k, kernel, attrs = SHAPES[shape_id]
    attrs = dict(attrs, kernel_shape=list(kernel))
    group = attrs.get("group", 1)
    rng = np.random.default_rng(seed)
    fan_in = (c // group) * kernel[0] * kernel[1]
    x = rand(rng, (n, h, w, c), precision, 1.0)
    weight = rand(rng, (k, c // group) + tuple(kernel), precision, 1.0 / np.sqrt(fan_in))
    lay = conv_layer(precision, attrs, bias=bias, residual=residual, activation=activation, params=params)
    weights = {"w": weight}
    host = {"x": x, "w": weight}
    if bias:
        weights["b"] = host["b"] = rand(rng, (k,), precision, 0.5)
    out_shape = (n,) + window_geometry((h, w), kernel, attrs).out + (k,)
    lay.output_shapes, lay.output_dtypes = [out_shape], [np.dtype(DT[precision]).name]
    if residual:
        host["z"] = rand(rng, out_shape, precision, 0.5)
    return lay, weights, [host.get(name) if name else None for name in lay.inputs]
