"""What every convolution tactic of the CUDA backend shares: which layers are convolutions we can
run, their geometry at a given input shape, their weights re-laid out and their fused epilogue.

A Conv or workbench::FusedConv layer computes, in NHWC (workbench::FusedQConv, its int8 form, adds a
per-channel multiplier before B and rounds to int8: workbench/ir/fused/conv.py),

    Y[n, p, q, k] = act(sum_{r, s, c} X[n, p*sh - pt + r*dh, q*sw - pl + s*dw, g*Cg + c] * W[k, c, r, s]
                        + B[k] + Z[n, p, q, k])            (g = k // Kg, zero outside the image)

The geometry (output size, begin pads) comes from the CPU oracle's own `window_geometry`, so
every auto_pad mode (NOTSET, VALID, SAME_UPPER, SAME_LOWER) resolves exactly as the oracle does,
from the input shape seen at run time.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.nn import window_geometry
from workbench.backends.cuda.device import device_info
from workbench.backends.cuda.epilogue import activation_of
from workbench.backends.cuda.tactic import DTYPES

__all__ = ["conv_operands", "ConvGeometry", "ConvWeights", "is_conv2d_nhwc", "known_out_channels", "geometry",
           "conv_weights", "qconv_constants", "epilogue_inputs", "check_output", "check_arrays", "launch_1d", "FLOAT_PRECISIONS"]

FLOAT_PRECISIONS = ("fp32", "tf32", "fp16")
_AUTO_PADS = ("", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
_MAX_INPUTS = {("", "Conv"): 3, ("workbench", "FusedConv"): 4, ("workbench", "FusedQConv"): 5}   # X W [M] B Z


def is_conv2d_nhwc(layer: Layer, precision: str, precisions=FLOAT_PRECISIONS) -> bool:
    """A 2-D Conv/FusedConv on channels-last activations, at a precision we run, whose attributes
    are well formed and whose activation has a GPU epilogue. Pure: attributes only, no GPU."""
    op = (layer.domain if layer.domain != "ai.onnx" else "", layer.op)
    if op not in _MAX_INPUTS or (op[1] == "FusedQConv") != (precision == "int8"):
        return False
    if layer.layout != "NHWC" or precision not in precisions:
        return False
    if not 2 <= len(layer.inputs) <= _MAX_INPUTS[op] or not layer.inputs[0] or not layer.inputs[1]:
        return False
    attrs = layer.attrs
    kernel = attrs.get("kernel_shape")
    if kernel is not None and (len(kernel) != 2 or min(kernel) < 1):
        return False
    for name, size in (("strides", 2), ("dilations", 2), ("pads", 4)):
        value = attrs.get(name)
        if value is not None and len(value) != size:
            return False
    if any(v < 1 for v in attrs.get("strides") or [1]) or any(v < 1 for v in attrs.get("dilations") or [1]):
        return False
    if any(v < 0 for v in attrs.get("pads") or [0]):
        return False
    if (attrs.get("auto_pad") or "") not in _AUTO_PADS or int(attrs.get("group", 1)) < 1:
        return False
    shapes = layer.output_shapes
    if shapes and shapes[0] is not None and len(shapes[0]) != 4:
        return False
    try:
        activation_of(layer)
    except ValueError:
        return False
    return True


def known_out_channels(layer: Layer) -> int | None:
    """K from the layer's (NHWC) output shape, when the builder knows it."""
    shapes = layer.output_shapes
    if shapes and shapes[0] is not None and len(shapes[0]) == 4 and isinstance(shapes[0][3], int):
        return shapes[0][3]
    return None


def kernel_is(layer: Layer, size: tuple[int, int]) -> bool:
    kernel = layer.attrs.get("kernel_shape")
    return kernel is not None and tuple(kernel) == size


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Every size a kernel launch needs, for one input shape."""
    n: int
    h: int
    w: int
    c: int
    k: int
    r: int
    s: int
    p: int
    q: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    dil_h: int
    dil_w: int
    group: int

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.p, self.q, self.k)

    @property
    def rows(self) -> int:
        """GEMM M: output pixels."""
        return self.n * self.p * self.q


@dataclasses.dataclass
class ConvWeights:
    """The layer's weights as numpy, checked; tactics re-lay them out and upload them."""
    w: np.ndarray               # OIHW [K, C/group, R, S], in the layer's activation dtype
    bias: np.ndarray | None     # [K] float32 (exact for fp16 weights), None without B
    group: int
    dtype: np.dtype             # activation dtype: float32 or float16
    activation: tuple[int, float, float]
    has_residual: bool

    @property
    def k(self) -> int:
        return int(self.w.shape[0])

    @property
    def c_per_group(self) -> int:
        return int(self.w.shape[1])


def qconv_constants(layer: Layer, weights: dict[str, np.ndarray],
                    tactic: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A FusedQConv layer's constants on the host, checked: the int8 OIHW weight, the float32
    multiplier [K] and the float32 bias [K] (None without B)."""
    w = weights.get(layer.inputs[1])
    if w is None or np.asarray(w).dtype != np.int8 or np.asarray(w).ndim != 4:
        raise ValueError(f"{tactic}: layer {layer.name!r}: weight {layer.inputs[1]!r} must be a constant int8 OIHW "
                         f"tensor, got {None if w is None else (np.asarray(w).dtype, np.shape(w))}")
    k = np.shape(w)[0]
    b_name = layer.inputs[3] if len(layer.inputs) > 3 else ""
    per_channel = []
    for what, name in (("multiplier", layer.inputs[2]), ("bias", b_name)):
        if not name:
            per_channel.append(None)
            continue
        if name not in weights:
            raise ValueError(f"{tactic}: layer {layer.name!r}: {what} {name!r} is not a constant")
        values = np.asarray(weights[name], np.float32).reshape(-1)
        if values.size != k:
            raise ValueError(f"{tactic}: layer {layer.name!r}: {what} {name!r} has {values.size} values, expected {k}")
        per_channel.append(values)
    return np.asarray(w), per_channel[0], per_channel[1]


def conv_weights(layer: Layer, weights: dict[str, np.ndarray], tactic: str) -> ConvWeights:
    """The layer's W (and B) from the constant weights, checked against its attributes."""
    dtype = np.dtype(DTYPES[layer.precision])
    w_name = layer.inputs[1]
    if w_name not in weights:
        raise ValueError(f"{tactic}: layer {layer.name!r}: weight {w_name!r} is not a constant initializer; "
                         f"GPU conv tactics need constant weights")
    w = np.asarray(weights[w_name])
    if w.ndim != 4:
        raise ValueError(f"{tactic}: layer {layer.name!r}: weight {w_name!r} has shape {w.shape}, expected 4-D OIHW")
    kernel = layer.attrs.get("kernel_shape")
    if kernel is not None and tuple(kernel) != tuple(w.shape[2:]):
        raise ValueError(f"{tactic}: layer {layer.name!r}: kernel_shape {list(kernel)} disagrees with weight "
                         f"{w_name!r} of shape {w.shape}")
    group = int(layer.attrs.get("group", 1))
    if w.shape[0] % group:
        raise ValueError(f"{tactic}: layer {layer.name!r}: {w.shape[0]} output channels do not split into "
                         f"{group} groups")
    bias = None
    b_name = layer.inputs[2] if len(layer.inputs) > 2 else ""
    if b_name:
        if b_name not in weights:
            raise ValueError(f"{tactic}: layer {layer.name!r}: bias {b_name!r} is not a constant initializer")
        bias = np.asarray(weights[b_name]).astype(np.float32).reshape(-1)
        if bias.shape[0] != w.shape[0]:
            raise ValueError(f"{tactic}: layer {layer.name!r}: bias {b_name!r} has {bias.shape[0]} values, "
                             f"expected {w.shape[0]}")
    has_residual = len(layer.inputs) > 3 and bool(layer.inputs[3])
    return ConvWeights(np.ascontiguousarray(w.astype(dtype, copy=False)), bias, group, dtype,
                       activation_of(layer), has_residual)


def geometry(layer: Layer, cw: ConvWeights, x_shape: tuple[int, ...], cache: dict | None = None) -> ConvGeometry:
    """The convolution's geometry for an NHWC input of `x_shape`, pads resolved like the oracle;
    `cache` (a dict kept in the tactic's state) spares recomputing it on every run."""
    key = tuple(x_shape)
    if cache is not None and key in cache:
        return cache[key]
    geo = _geometry(layer, cw, key)
    if cache is not None:
        cache[key] = geo
    return geo


def _geometry(layer: Layer, cw: ConvWeights, x_shape: tuple[int, ...]) -> ConvGeometry:
    if len(x_shape) != 4:
        raise ValueError(f"layer {layer.name!r}: input {layer.inputs[0]!r} has shape {tuple(x_shape)}, "
                         f"expected 4-D NHWC")
    n, h, w, c = (int(v) for v in x_shape)
    if c != cw.c_per_group * cw.group:
        raise ValueError(f"layer {layer.name!r}: input {layer.inputs[0]!r} has {c} channels (NHWC shape "
                         f"{tuple(x_shape)}), the weight expects {cw.c_per_group} x group {cw.group}")
    r, s = (int(v) for v in cw.w.shape[2:])
    geo = window_geometry((h, w), (r, s), layer.attrs)
    return ConvGeometry(n, h, w, c, cw.k, r, s, geo.out[0], geo.out[1], geo.strides[0], geo.strides[1],
                        geo.pads_begin[0], geo.pads_begin[1], geo.pads_end[0], geo.pads_end[1],
                        geo.dilations[0], geo.dilations[1], cw.group)


def check_output(layer: Layer, geo: ConvGeometry, out: Any, tactic: str) -> None:
    if tuple(out.shape) != geo.out_shape:
        raise ValueError(f"{tactic}: layer {layer.name!r}: output {layer.outputs[0]!r} has shape {tuple(out.shape)}, "
                         f"the convolution gives {geo.out_shape} (NHWC)")


def epilogue_inputs(layer: Layer, inputs) -> tuple[Any, Any]:
    """(X, Z) of a run: the activation input and the residual (None when absent)."""
    x = inputs[0]
    z = inputs[3] if len(inputs) > 3 and len(layer.inputs) > 3 and layer.inputs[3] else None
    return x, z


def check_arrays(tactic: str, layer: Layer, cw: ConvWeights, x, z, y) -> None:
    """Dtypes, contiguity and the residual's shape: what the kernels assume without checking."""
    for what, array in (("input", x), ("residual", z), ("output", y)):
        if array is not None and array.dtype != cw.dtype:
            raise TypeError(f"{tactic}: layer {layer.name!r} ({layer.precision}): {what} is {array.dtype}, "
                            f"expected {cw.dtype}")
        if array is not None and not array.flags.c_contiguous:
            raise ValueError(f"{tactic}: layer {layer.name!r}: {what} must be C-contiguous NHWC")
    if z is not None and z.shape != y.shape:
        raise ValueError(f"{tactic}: layer {layer.name!r}: residual {layer.inputs[3]!r} has shape {tuple(z.shape)}, "
                         f"the output {tuple(y.shape)}")


_BLOCK = 256


def launch_1d(kernel, total: int, args: tuple) -> None:
    """Launch a grid-stride kernel over `total` items (enough blocks to fill the GPU, no more)."""
    if total <= 0:
        return
    blocks = min((total + _BLOCK - 1) // _BLOCK, device_info()["sm_count"] * 32)
    kernel((blocks,), (_BLOCK,), args)


def conv_operands(tactic: str, state: Any, inputs, outputs) -> tuple:
    """What every conv tactic's `run` starts from: (layer, weights, x, residual z, output y,
    geometry), with the output's shape checked against the geometry."""
    layer, cw = state.layer, state.weights
    x, z = epilogue_inputs(layer, inputs)
    y = outputs[0]
    geo = geometry(layer, cw, x.shape, state.geos)
    check_output(layer, geo, y, tactic)
    return layer, cw, x, z, y, geo
