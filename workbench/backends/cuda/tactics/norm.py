"""Normalizations on the GPU: Softmax and LayerNorm (kernels/norm.cu), BatchNormalization.

Softmax follows the opset: from 13 it runs along `axis` (a middle axis gets the strided
kernel), before 13 the input is read as 2-D [prod(shape[:axis]), prod(shape[axis:])] rows.
LayerNormalization and workbench::FusedLayerNorm normalize the trailing axes from `axis` with
fp32 statistics (mean, then the mean squared deviation, as the oracle). BatchNormalization
(inference) is folded to y = x * a + b per channel in float64 on the host, once, in `prepare`;
it runs in NCHW and NHWC.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import host_weight, present_outputs

__all__ = ["launch_softmax_rows", "SOFTMAX_INSTANCES"]

_SOURCE = "norm.cu"
_TYPES = {"float32": "float", "float16": "__half"}
_THREADS = 256
_WARP_ROW_MAX = 2048                  # rows up to this length: one warp each
SOFTMAX_INSTANCES = tuple(
    f"softmax_rows<{ti},{to},{tm},{_THREADS},{w}>"
    for ti, to in (("float", "float"), ("__half", "__half"), ("float", "__half"))
    for tm in ("float", "__half") for w in ("true", "false"))
_WARP_CHUNKS = (1, 2, 4, 8)             # layer_norm_warp: 16-byte vectors per lane per row, at most
_INSTANCES = SOFTMAX_INSTANCES + tuple(f"softmax_strided<{t}>" for t in _TYPES.values()) + tuple(
    f"layer_norm_rows<{t},{_THREADS}>" for t in _TYPES.values()) + tuple(
    f"layer_norm_warp<{t},{c}>" for t in _TYPES.values() for c in _WARP_CHUNKS)
_MAX_BLOCKS = 132 * 32
_FLOATS = ("fp32", "tf32", "fp16")


def _kernel(name: str):
    return get_kernel(_SOURCE, name, _INSTANCES)


def _ctype(layer: Layer, array) -> str:
    if array.dtype.name not in _TYPES or not array.flags.c_contiguous:
        raise ValueError(f"layer {layer.name!r} ({layer.qualified_op}): needs a contiguous float32/float16 "
                         f"array, got {array.dtype.name}{tuple(array.shape)} (contiguous {array.flags.c_contiguous})")
    return _TYPES[array.dtype.name]


def launch_softmax_rows(x, y, rows: int, n: int, scale: float = 1.0, mask=None, mask_strides=(0, 0, 0, 0),
                        mask_b1: int = 1, mask_sq: int = 1) -> None:
    """softmax(scale * x + mask) over `rows` contiguous rows of length `n` (x, y contiguous; x may
    be fp32 with y fp16, as attention's fp32 scores -> fp16 probabilities)."""
    ti, to = _TYPES[x.dtype.name], _TYPES[y.dtype.name]
    tm = "float" if mask is None else _TYPES[mask.dtype.name]
    warp_rows = n <= _WARP_ROW_MAX
    name = f"softmax_rows<{ti},{to},{tm},{_THREADS},{'true' if warp_rows else 'false'}>"
    per_block = _THREADS // 32 if warp_rows else 1
    grid = (max(1, min(-(-rows // per_block), _MAX_BLOCKS)),)
    mask_arg = mask if mask is not None else np.uint64(0)
    _kernel(name)(grid, (_THREADS,), (x, y, np.int64(rows), np.int32(n), np.float32(scale), mask_arg,
                                      *(np.int64(s) for s in mask_strides), np.int32(mask_b1), np.int32(mask_sq)))


class Softmax(CudaTactic):
    name = "kernels.softmax"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (layer.op == "Softmax" and layer.domain in ("", "ai.onnx") and precision in _FLOATS
                and layer.layout != "NHWC")

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> Layer:
        return layer

    def run(self, layer: Layer, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, y = inputs[0], present_outputs(layer, outputs)[0][1]
        ctype = _ctype(layer, x)
        _ctype(layer, y)
        if x.size == 0:
            return outputs
        rank = max(x.ndim, 1)
        if layer.opset >= 13:
            axis = int(layer.attrs.get("axis", -1)) % rank
            if axis != x.ndim - 1:
                outer, n = math.prod(x.shape[:axis]), x.shape[axis]
                inner = math.prod(x.shape[axis + 1:])
                grid = (max(1, min(-(-(outer * inner) // _THREADS), _MAX_BLOCKS)),)
                _kernel(f"softmax_strided<{ctype}>")(grid, (_THREADS,), (x, y, np.int64(outer), np.int32(n),
                                                                         np.int64(inner)))
                return outputs
        else:
            axis = int(layer.attrs.get("axis", 1)) % rank
        n = math.prod(x.shape[axis:])
        launch_softmax_rows(x, y, x.size // n, n)
        return outputs


@dataclasses.dataclass
class _NormState:
    layer: Layer
    scale: np.ndarray | None
    bias: np.ndarray | None
    device: dict = dataclasses.field(default_factory=dict)     # normalized shape -> (scale, bias) on device


class LayerNorm(CudaTactic):
    """LayerNormalization (its Y output only) and workbench::FusedLayerNorm."""
    name = "kernels.layer_norm"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        if precision not in _FLOATS or layer.layout == "NHWC":
            return False
        if layer.domain == "workbench" and layer.op == "FusedLayerNorm":
            return True
        return (layer.op == "LayerNormalization" and layer.domain in ("", "ai.onnx")
                and sum(1 for o in layer.outputs if o) == 1 and bool(layer.outputs[0]))

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _NormState:
        params = []
        for index, what in ((1, "scale"), (2, "bias")):
            if index < len(layer.inputs) and layer.inputs[index] and host_weight(layer, weights, index) is None:
                raise ValueError(f"layer {layer.name!r}: LayerNorm {what} {layer.inputs[index]!r} must be a constant")
            value = host_weight(layer, weights, index)
            params.append(None if value is None else value.astype(np.float32))
        return _NormState(layer, *params)

    def _params(self, state: _NormState, shape: tuple) -> tuple:
        if shape not in state.device:        # first run (a warm-up): broadcast and upload once
            cp = cupy()
            state.device[shape] = tuple(
                None if p is None else cp.asarray(np.ascontiguousarray(np.broadcast_to(p, shape), np.float32))
                for p in (state.scale, state.bias))
        return state.device[shape]

    def run(self, state: _NormState, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer = state.layer
        x, y = inputs[0], present_outputs(layer, outputs)[0][1]
        ctype = _ctype(layer, x)
        _ctype(layer, y)
        axis = int(layer.attrs.get("axis", -1)) % max(x.ndim, 1)
        normalized = tuple(x.shape[axis:])
        n = math.prod(normalized)
        if x.size == 0 or n == 0:
            return outputs
        scale, bias = self._params(state, normalized)
        rows = x.size // n
        null = np.uint64(0)
        args = (x, y, null if scale is None else scale, null if bias is None else bias, np.int64(rows), np.int32(n),
                np.float32(layer.attrs.get("epsilon", 1e-5)))
        chunks = _warp_chunks(x, y, n)
        if chunks:              # the row fits one warp's registers: one read, shuffles only
            _kernel(f"layer_norm_warp<{ctype},{chunks}>")((max(1, min(-(-rows // 8), _MAX_BLOCKS)),), (256,), args)
        else:
            _kernel(f"layer_norm_rows<{ctype},{_THREADS}>")((max(1, min(rows, _MAX_BLOCKS)),), (_THREADS,), args)
        return outputs


def _warp_chunks(x, y, n: int) -> int:
    """16-byte vectors per lane that layer_norm_warp needs for rows of n, or 0 when it does not apply."""
    vec = 16 // x.itemsize
    if n % vec or x.data.ptr % 16 or y.data.ptr % 16:
        return 0
    return next((c for c in _WARP_CHUNKS if n <= 32 * vec * c), 0)


_AFFINE = None


def _affine_kernel():
    global _AFFINE
    if _AFFINE is None:
        _AFFINE = cupy().ElementwiseKernel("T x, float32 a, float32 b", "T y", "y = (T)((float)x * a + b);",
                                           "wb_channel_affine")
    return _AFFINE


class BatchNorm(CudaTactic):
    """BatchNormalization in inference mode as a per-channel affine map."""
    name = "cupy.batch_norm"
    source = "cupy"

    def supports(self, layer: Layer, precision: str) -> bool:
        if layer.op != "BatchNormalization" or layer.domain not in ("", "ai.onnx") or precision not in _FLOATS:
            return False
        training = layer.attrs.get("training_mode", 0) if layer.opset >= 14 else 0
        return not training and sum(1 for o in layer.outputs if o) == 1

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> dict:
        values = [host_weight(layer, weights, i) for i in range(1, 5)]
        if any(v is None for v in values):
            raise ValueError(f"layer {layer.name!r}: BatchNormalization scale, bias, mean and var must be constants")
        scale, bias, mean, var = (v.astype(np.float64).reshape(-1) for v in values)
        a = scale / np.sqrt(var + float(layer.attrs.get("epsilon", 1e-5)))
        b = bias - mean * a
        cp = cupy()
        return {"layer": layer, "a": cp.asarray(a.astype(np.float32)), "b": cp.asarray(b.astype(np.float32))}

    def run(self, state: dict, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer = state["layer"]
        x, y = inputs[0], present_outputs(layer, outputs)[0][1]
        c = state["a"].size
        if layer.layout == "NHWC" and x.ndim == 4:
            shape = (1, 1, 1, c)
        else:
            shape = (1, c) + (1,) * max(0, x.ndim - 2)
        _affine_kernel()(x, state["a"].reshape(shape), state["b"].reshape(shape), y)
        return outputs


register(Softmax())
register(LayerNorm())
register(BatchNorm())
