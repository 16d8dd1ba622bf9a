"""Pooling on the GPU (kernels/pool.cu): MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
NCHW and NHWC, fp32 and fp16 storage with fp32 math.

The window geometry (pads, auto_pad, ceil_mode, dilations) is computed on the host by the CPU
oracle's own `window_geometry`, so both backends agree on output sizes and pads by construction;
the kernel only walks the taps. NHWC is the fast layout: neighbouring threads read neighbouring
channels of the same pixel.
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
_TYPES = {"float32": "float", "float16": "__half"}
_INSTANCES = tuple(
    [f"pool2d<{t},{m},{l}>" for t in _TYPES.values() for m in ("true", "false") for l in ("true", "false")]
    + [f"global_pool_{l}<{t},{m}>" for l in ("nhwc", "nchw") for t in _TYPES.values() for m in ("true", "false")])
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


def _check(layer: Layer, x, out) -> str:
    if x.ndim != 4 or x.dtype.name not in _TYPES or out.dtype != x.dtype:
        raise ValueError(f"layer {layer.name!r} ({layer.op}): needs a 4-D float32/float16 input and output of "
                         f"its dtype, got {x.dtype.name}{tuple(x.shape)} -> {out.dtype.name}{tuple(out.shape)}")
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError(f"layer {layer.name!r} ({layer.op}): needs contiguous input and output")
    return _TYPES[x.dtype.name]


class WindowPool(CudaTactic):
    """`kernels.pool2d`: MaxPool (one output) and AveragePool over 2-D windows."""
    name = "kernels.pool2d"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        if layer.domain not in ("", "ai.onnx") or layer.op not in ("MaxPool", "AveragePool"):
            return False
        if precision not in ("fp32", "tf32", "fp16") or len(layer.attrs.get("kernel_shape", [])) != 2:
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
        if out.size:
            nhwc = "true" if layer.layout == "NHWC" else "false"
            kernel = _kernel(f"pool2d<{ctype},{'true' if _is_max(layer) else 'false'},{nhwc}>")
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
        return precision in ("fp32", "tf32", "fp16") and rank_ok

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


register(WindowPool())
register(GlobalPool())
