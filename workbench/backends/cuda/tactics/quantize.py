"""QuantizeLinear and DequantizeLinear on the GPU (kernels/quantize.cu), bit-exact with the CPU
oracle (cpu/ops/quantize.py): an INT8 engine keeps its Q/DQ layers on the device and in its CUDA
graph instead of crossing to the host for each.

Scope: int8 / uint8 (DequantizeLinear also int32) with float32 or float16 scales, per-tensor or
per-axis, any rank. Float8, int4, blocked quantization and a `precision` attr other than float32
keep the host fallback (`supports` says no). Which types meet is read from the arrays at run time:
`supports` sees only the layer, so an input dtype it cannot know (a float8 DequantizeLinear input)
is refused in `run` with the layer named. An omitted zero point is a zero point of 0 in the
output's type (uint8 by default, per ONNX), read from a 4-byte zero buffer made in `prepare`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from onnx import TensorProto

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import nhwc_axis, present_outputs, resolve_inputs, upload_weights

__all__: list[str] = []

_SOURCE = "quantize.cu"
_FLOATS = {"float32": "float", "float16": "__half"}
_QUANTIZED = {"int8": "signed char", "uint8": "unsigned char"}
_DEQUANTIZED = {**_QUANTIZED, "int32": "int"}
_INSTANCES = tuple(
    [f"quantize_linear{form}<{x},{s},{q}>" for form in ("", "_x4") for x in _FLOATS.values() for s in _FLOATS.values()
     for q in _QUANTIZED.values()]
    + [f"dequantize_linear<{q},{s},{y}>" for q in _DEQUANTIZED.values() for s in _FLOATS.values()
       for y in _FLOATS.values()])
_THREADS = 256
_MAX_BLOCKS = 132 * 32          # the grid-stride loop covers the rest


def _grid(total: int) -> tuple[int]:
    return (max(1, min(-(-total // _THREADS), _MAX_BLOCKS)),)


def _plain(layer: Layer, op: str, output_dtype_codes: tuple[int, ...], output_dtypes: dict) -> bool:
    """What both ops' `supports` ask: this op, one output, no blocks, an output dtype the kernels write."""
    if layer.domain not in ("", "ai.onnx") or layer.op != op or sum(1 for o in layer.outputs if o) != 1:
        return False
    attrs = layer.attrs
    if attrs.get("block_size", 0) or attrs.get("output_dtype", 0) not in (0, *output_dtype_codes):
        return False
    known = layer.output_dtypes[0] if layer.output_dtypes else ""
    return not known or known in output_dtypes


def _ctype(layer: Layer, array, types: dict, what: str) -> str:
    if array.dtype.name not in types:
        raise ValueError(f"layer {layer.name!r} ({layer.op}): {what} is {array.dtype.name}; the CUDA kernel takes "
                         f"{'/'.join(types)} (other types run on the host fallback)")
    if not array.flags.c_contiguous:
        raise ValueError(f"layer {layer.name!r} ({layer.op}): {what} must be contiguous")
    return types[array.dtype.name]


def _per_axis(layer: Layer, x, scale, zero_point) -> tuple:
    """(inner, channels, scale step, zero point step): where along the flat index the axis sits
    and which parameters follow it (a one-value parameter is per-tensor, as in the oracle)."""
    if scale.size == 1 and zero_point.size == 1:
        return np.int64(1), np.int32(1), np.int32(0), np.int32(0)
    rank = x.ndim
    axis = int(layer.attrs.get("axis", 1))
    if not -rank <= axis < rank:
        raise ValueError(f"layer {layer.name!r} ({layer.op}): axis {axis} is out of range for rank {rank}")
    stored = nhwc_axis(axis, rank, layer.layout)        # attrs keep ONNX's NCHW meaning
    channels = x.shape[stored]
    for what, value in (("scale", scale), ("zero point", zero_point)):
        if value.size not in (1, channels):
            raise ValueError(f"layer {layer.name!r} ({layer.op}): {what} has {value.size} values, axis {axis} "
                             f"of the input has {channels}")
    inner = int(np.prod(x.shape[stored + 1:], dtype=np.int64))
    return np.int64(inner), np.int32(channels), np.int32(scale.size > 1), np.int32(zero_point.size > 1)


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: dict[int, Any]             # input index -> device copy of a constant input
    zero: Any                           # 4 zero bytes: the omitted zero point, viewed as any int type


def _zero_point(state: _State, zero_point, dtype, of: str):
    """The zero point, which must have `dtype` (that of `of`); an omitted one is 0 of that type."""
    if zero_point is None:
        return state.zero.view(dtype)[:1]
    if zero_point.dtype != dtype or not zero_point.flags.c_contiguous:
        raise ValueError(f"layer {state.layer.name!r} ({state.layer.op}): the zero point is {zero_point.dtype.name}, "
                         f"{of} {np.dtype(dtype).name}; it must be a contiguous array of that type")
    return zero_point


class _QdqTactic(CudaTactic):
    """Both kernels' launch: x, scale, zero point and the output checked, then one instance of
    `template` over the element types; the subclass names which side is quantized and the types."""
    source = "kernels"
    template: str
    x_types: dict
    out_types: dict
    quantizes: bool             # the output is the quantized side (its dtype is the zero point's)
    vector_template = ""        # a per-tensor form taking 4 elements a thread, if the kernel file has one

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        return _State(layer, upload_weights(layer, weights), cupy().zeros(1, np.int32))

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer = state.layer
        x, scale, zero_point = resolve_inputs(state.weights, inputs, 3)
        out = present_outputs(layer, outputs)[0][1]
        if tuple(out.shape) != tuple(x.shape):
            raise ValueError(f"layer {layer.name!r} ({layer.op}): output is {tuple(out.shape)}, input "
                             f"{tuple(x.shape)}")
        types = (_ctype(layer, x, self.x_types, "input x"), _ctype(layer, scale, _FLOATS, "scale"),
                 _ctype(layer, out, self.out_types, "the output"))
        quantized, what = (out, "the output") if self.quantizes else (x, "input x")
        zero_point = _zero_point(state, zero_point, quantized.dtype, what)
        if not x.size:
            return outputs
        if self.vector_template and scale.size == 1 and zero_point.size == 1 and x.size % 4 == 0 \
                and x.data.ptr % (4 * x.itemsize) == 0 and out.data.ptr % (4 * out.itemsize) == 0:
            kernel = get_kernel(_SOURCE, f"{self.vector_template}<{','.join(types)}>", _INSTANCES)
            kernel(_grid(x.size // 4), (_THREADS,), (x, scale, zero_point, out, np.int64(x.size // 4),
                                                     *self._extra_args(layer, scale)))
            return outputs
        kernel = get_kernel(_SOURCE, f"{self.template}<{','.join(types)}>", _INSTANCES)
        kernel(_grid(x.size), (_THREADS,), (x, scale, zero_point, out, np.int64(x.size),
                                            *_per_axis(layer, x, scale, zero_point), *self._extra_args(layer, scale)))
        return outputs

    def _extra_args(self, layer: Layer, scale) -> tuple:
        return ()


class QuantizeKernel(_QdqTactic):
    """`kernels.quantize_linear`: y = saturate(round_half_even(x / scale) + zero_point), int8 / uint8."""
    name = "kernels.quantize_linear"
    template, x_types, out_types, quantizes = "quantize_linear", _FLOATS, _QUANTIZED, True
    vector_template = "quantize_linear_x4"

    def supports(self, layer: Layer, precision: str) -> bool:
        if precision == "bf16" or layer.attrs.get("precision", 0) not in (0, TensorProto.FLOAT):
            return False
        return _plain(layer, "QuantizeLinear", (TensorProto.INT8, TensorProto.UINT8), _QUANTIZED)

    def _extra_args(self, layer: Layer, scale) -> tuple:
        # the oracle divides in the scale's dtype unless the `precision` attr says float32
        return (np.int32(scale.dtype == np.float16 and not layer.attrs.get("precision", 0)),)


class DequantizeKernel(_QdqTactic):
    """`kernels.dequantize_linear`: y = (x - zero_point) * scale in float32, written float32 or float16."""
    name = "kernels.dequantize_linear"
    template, x_types, out_types, quantizes = "dequantize_linear", _DEQUANTIZED, _FLOATS, False

    def supports(self, layer: Layer, precision: str) -> bool:
        return _plain(layer, "DequantizeLinear", (TensorProto.FLOAT, TensorProto.FLOAT16), _FLOATS)


register(QuantizeKernel())
register(DequantizeKernel())
