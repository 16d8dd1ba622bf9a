"""Pooling on the GPU (kernels/pool.cu): MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
NCHW and NHWC, fp32 and fp16 storage with fp32 math; MaxPool and GlobalMaxPool also on int8 /
uint8 (builder/int8_fusion.py moves max pools after their QuantizeLinear: an int8 engine pools its
quantized activations without dequantizing them); workbench::QGlobalAveragePool, int8 to int8.

The window geometry (pads, auto_pad, ceil_mode, dilations) is computed on the host by the CPU
oracle's own `window_geometry`, so both backends agree on output sizes and pads by construction;
the kernel only walks the taps. NHWC is the fast layout: neighbouring threads read neighbouring
channels of the same pixel. An NHWC MaxPool whose rows of channels are whole 16-byte vectors
(and whose buffers are 16-byte aligned) runs `max_pool2d_nhwc_vec16`, one 16-byte vector per
thread; anything else runs the general `pool2d`. The tensor's dtype picks the kernel, not the
layer's precision (an int8 engine's MaxPool may be labelled int8 and read float32, or the reverse).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.nn import window_geometry
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import present_outputs

__all__: list[str] = []

_SOURCE = "pool.cu"
_FLOAT_TYPES = {"float32": "float", "float16": "__half"}
_INT_TYPES = {"int8": "signed char", "uint8": "unsigned char"}
_MAX_TYPES = {**_FLOAT_TYPES, **_INT_TYPES}                     # what the max pools take
# windows the 16-byte kernel unrolls at compile time (ResNet's 3x3, VGG/UNet's 2x2); (0, 0) is any other
_VEC_WINDOWS = ((3, 3), (2, 2), (0, 0))
_VEC_BYTES = 16
_INSTANCES = tuple(
    [f"pool2d<{t},{m},{l}>" for t in _FLOAT_TYPES.values() for m in ("true", "false") for l in ("true", "false")]
    + [f"pool2d<{t},true,{l}>" for t in _INT_TYPES.values() for l in ("true", "false")]
    + [f"max_pool2d_nhwc_vec16<{t},{kh},{kw}>" for t in _MAX_TYPES.values() for kh, kw in _VEC_WINDOWS]
    + [f"global_pool_{l}<{t},{m}>" for l in ("nhwc", "nchw") for t in _FLOAT_TYPES.values() for m in ("true", "false")]
    + [f"global_pool_{l}<{t},true>" for l in ("nhwc", "nchw") for t in _INT_TYPES.values()]
    + ["qglobal_avg_pool_nhwc<4>", "qglobal_avg_pool_nhwc<1>", "qglobal_avg_pool_nchw"])
_THREADS = 256


def _kernel(name: str):
    return get_kernel(_SOURCE, name, _INSTANCES)


def _grid(total: int, per_block: int = _THREADS) -> tuple[int]:
    return (max(1, min(-(-total // per_block), 132 * 32)),)


def _is_max(layer: Layer) -> bool:
    return layer.op in ("MaxPool", "GlobalMaxPool")


@dataclasses.dataclass
class _State:
    layer: Layer
    geometry: dict = dataclasses.field(default_factory=dict)    # input shape -> kernel int arguments


def _types(layer: Layer) -> dict[str, str]:
    return _MAX_TYPES if _is_max(layer) else _FLOAT_TYPES


def _precisions(layer: Layer) -> tuple[str, ...]:
    return ("fp32", "tf32", "fp16", "int8") if _is_max(layer) else ("fp32", "tf32", "fp16")


def _dtype_supported(layer: Layer) -> bool:
    """The output dtype, where the builder has set it, is one the kernels take (unknown: decided at run)."""
    dtype = layer.output_dtypes[0] if layer.output_dtypes else ""
    return not dtype or dtype in _types(layer)


def _check(layer: Layer, x, out, types: dict[str, str] | None = None) -> str:
    types = types or _types(layer)
    if x.ndim != 4 or x.dtype.name not in types or out.dtype != x.dtype:
        raise ValueError(f"layer {layer.name!r} ({layer.op}): needs a 4-D {'/'.join(types)} input and output of "
                         f"its dtype, got {x.dtype.name}{tuple(x.shape)} -> {out.dtype.name}{tuple(out.shape)}")
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"layer {layer.name!r} ({layer.op}): needs contiguous input and output")
    return types[x.dtype.name]


def fits_vec16(x, out) -> bool:
    """Whether an NHWC max pool of `x` into `out` can run max_pool2d_nhwc_vec16: each pixel's channels
    are whole 16-byte vectors, both buffers are 16-byte aligned (arena slices may not be), and the
    kernel's 32-bit decomposition of the output index holds."""
    return (x.shape[3] * x.itemsize % _VEC_BYTES == 0 and x.data.ptr % _VEC_BYTES == 0
            and out.data.ptr % _VEC_BYTES == 0 and out.nbytes // _VEC_BYTES < 2 ** 31)


class WindowPool(CudaTactic):
    """`kernels.pool2d`: MaxPool (one output) and AveragePool over 2-D windows."""
    name = "kernels.pool2d"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        if layer.domain not in ("", "ai.onnx") or layer.op not in ("MaxPool", "AveragePool"):
            return False
        if precision not in _precisions(layer) or len(layer.attrs.get("kernel_shape", [])) != 2:
            return False
        if not _dtype_supported(layer):
            return False
        return sum(1 for o in layer.outputs if o) == 1          # MaxPool's Indices output is not ours

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        return _State(layer)

    def _arguments(self, state: _State, x, out) -> tuple:
        layer, nhwc = state.layer, state.layer.layout == "NHWC"
        key = tuple(x.shape)
        if key not in state.geometry:
            n, h, w, c = x.shape if nhwc else (x.shape[0], x.shape[2], x.shape[3], x.shape[1])
            attrs = layer.attrs
            geo = window_geometry((h, w), attrs["kernel_shape"], attrs, bool(attrs.get("ceil_mode", 0)), pool=True)
            oh, ow = geo.out
            want = (n, oh, ow, c) if nhwc else (n, c, oh, ow)
            if tuple(out.shape) != want:
                raise ValueError(f"layer {layer.name!r} ({layer.op}): output is {tuple(out.shape)}, the window "
                                 f"geometry of input {tuple(x.shape)} gives {want}")
            include_pad = int(bool(attrs.get("count_include_pad", 0))) if layer.op == "AveragePool" else 0
            state.geometry[key] = tuple(np.int32(v) for v in (
                n, c, h, w, oh, ow, *geo.kernel, *geo.strides, *geo.dilations, *geo.pads_begin, *geo.pads_end,
                include_pad))
        return state.geometry[key]

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer = state.layer
        x, out = inputs[0], present_outputs(layer, outputs)[0][1]
        ctype = _check(layer, x, out)
        args = self._arguments(state, x, out)
        if not out.size:
            return outputs
        nhwc = layer.layout == "NHWC"
        if _is_max(layer) and nhwc and fits_vec16(x, out):
            window = tuple(layer.attrs["kernel_shape"])
            kh, kw = window if window in _VEC_WINDOWS else (0, 0)
            kernel = _kernel(f"max_pool2d_nhwc_vec16<{ctype},{kh},{kw}>")
            vectors = out.nbytes // _VEC_BYTES                  # one thread each, no grid-stride loop
            kernel((-(-vectors // _THREADS),), (_THREADS,), (x, out) + args)
        else:
            mode, layout = "true" if _is_max(layer) else "false", "true" if nhwc else "false"
            kernel = _kernel(f"pool2d<{ctype},{mode},{layout}>")
            kernel(_grid(out.size), (_THREADS,), (x, out) + args)
        return outputs


class GlobalPool(CudaTactic):
    """`kernels.global_pool`: GlobalAveragePool / GlobalMaxPool over the whole image."""
    name = "kernels.global_pool"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        if layer.domain not in ("", "ai.onnx") or layer.op not in ("GlobalAveragePool", "GlobalMaxPool"):
            return False
        shapes = layer.output_shapes
        rank_ok = not shapes or shapes[0] is None or len(shapes[0]) == 4
        return precision in _precisions(layer) and rank_ok and _dtype_supported(layer)

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> Layer:
        return layer

    def run(self, state: Layer, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, out = inputs[0], present_outputs(state, outputs)[0][1]
        ctype = _check(state, x, out)
        mode = "true" if _is_max(state) else "false"
        if state.layout == "NHWC":
            n, h, w, c = x.shape
            kernel = _kernel(f"global_pool_nhwc<{ctype},{mode}>")
            kernel(_grid(n * c), (_THREADS,), (x, out, np.int32(n), np.int32(h * w), np.int32(c)))
        else:
            n, c, h, w = x.shape
            rows = n * c
            kernel = _kernel(f"global_pool_nchw<{ctype},{mode}>")
            kernel(_grid(rows, _THREADS // 32), (_THREADS,), (x, out, np.int64(rows), np.int32(h * w)))
        return outputs


class QuantizedGlobalPool(CudaTactic):
    """`kernels.qglobal_avg_pool`: workbench::QGlobalAveragePool, int8 to int8 (exact integer sums,
    the oracle's float32 factor M / count, round half to even); NHWC reads 4 channels per load."""
    name = "kernels.qglobal_avg_pool"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        shapes = layer.output_shapes
        return (layer.op == "QGlobalAveragePool" and layer.domain == "workbench" and precision == "int8"
                and (not shapes or shapes[0] is None or len(shapes[0]) == 4))

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> tuple[Layer, np.float32]:
        multiplier = np.asarray(weights[layer.inputs[1]], np.float32)
        if multiplier.size != 1 or not np.isfinite(multiplier).all():
            raise ValueError(f"layer {layer.name!r} (QGlobalAveragePool): multiplier {layer.inputs[1]!r} must be "
                             f"one finite float32, got {multiplier.shape} {multiplier.ravel()[:4]}")
        return layer, multiplier.reshape(())

    def run(self, state, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, multiplier = state
        x, out = inputs[0], present_outputs(layer, outputs)[0][1]
        _check(layer, x, out, {"int8": "signed char"})
        nhwc = layer.layout == "NHWC"
        n, c = x.shape[0], x.shape[3] if nhwc else x.shape[1]
        hw = x.size // max(1, n * c)
        factor = multiplier / np.float32(max(1, hw))              # the oracle's float32 division
        if not out.size:
            return outputs
        if nhwc:
            vec = 4 if c % 4 == 0 and x.data.ptr % 4 == 0 else 1
            kernel = _kernel(f"qglobal_avg_pool_nhwc<{vec}>")
            kernel(_grid(n * c // vec), (_THREADS,), (x, out, np.int32(n), np.int32(hw), np.int32(c), factor))
        else:
            kernel = _kernel("qglobal_avg_pool_nchw")
            kernel(_grid(n * c, _THREADS // 32), (_THREADS,), (x, out, np.int64(n * c), np.int32(hw), factor))
        return outputs


register(WindowPool())
register(GlobalPool())
register(QuantizedGlobalPool())
