"""Data movement on the GPU, joins and lookups: concat, split (and their workbench views), gather,
cast, expand. Copies on movement.py's `_Copy` base, plus SplitView: views of the input along a
leading axis. Channels-last layers are accepted only where an NCHW axis attribute is remapped
(Concat/Split and their views: channel axis 1 -> 3) or the op is layout-free (Cast).
"""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import ints_of, present_outputs
from workbench.backends.cuda.tactics.movement import _Copy, _is

__all__: list[str] = []


# ---- Concat / ConcatView, Split / SplitView -------------------------------------------------------

def _stored_axis(layer: Layer, rank: int) -> int:
    """The concat/split axis in the stored array. NHWC layers take only the channel axis: 1 (or
    -3), NCHW's numbering, remapped here; 3 is read as already remapped (builder/layout.py
    rewrites the attribute), so both conventions land on the channels."""
    axis = int(layer.attrs.get("axis", 0 if layer.domain not in ("", "ai.onnx") or layer.opset >= 4 else 1))
    if layer.layout == "NHWC" and rank == 4:
        if axis in (1, -3, 3):
            return 3
        if axis in (0, -4):
            return 0
        raise ValueError(f"layer {layer.name!r} ({layer.op}, NHWC): axis {axis} is no channel axis")
    return axis + rank if axis < 0 else axis


def _nhwc_axis_ok(layer: Layer) -> bool:
    return layer.layout != "NHWC" or int(layer.attrs.get("axis", 0)) in (1, -3, 3, 0, -4)


def _same_memory(a, b) -> bool:
    return a.data.ptr == b.data.ptr and a.strides == b.strides and a.shape == b.shape


class Concat(_Copy):
    """Each input copied into its slice of the output; an input its producer already wrote in
    place (ConcatView's memory contract) is skipped."""
    name = "cupy.concat"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (_is(layer, "Concat") or _is(layer, "ConcatView", "workbench")) and _nhwc_axis_ok(layer)

    def copy(self, state, args, outs):
        cp, out, layer = cupy(), outs[0], state.layer
        axis = _stored_axis(layer, out.ndim)
        offset = 0
        index = [slice(None)] * out.ndim
        for x in args:
            if x is None:
                continue
            index[axis] = slice(offset, offset + x.shape[axis])
            offset += x.shape[axis]
            part = out[tuple(index)]
            if not _same_memory(part, x):
                cp.copyto(part, x)
        if offset != out.shape[axis]:
            raise ValueError(f"layer {layer.name!r}: inputs add up to {offset} along axis {axis}, "
                             f"the output has {out.shape[axis]}")


def _split_sizes(layer: Layer, weights: dict | None, dim: int, count: int) -> list[int]:
    sizes = layer.attrs.get("split")
    if sizes is None and weights is not None and len(layer.inputs) > 1 and layer.inputs[1]:
        sizes = ints_of(layer, weights, 1, "split")
    if not sizes:
        n = int(layer.attrs.get("num_outputs", count))
        chunk = -(-dim // n)
        sizes = [min(chunk, max(dim - i * chunk, 0)) for i in range(n)]
    return [int(s) for s in sizes]


def _split_parts(layer: Layer, split, x, count: int) -> list:
    axis = _stored_axis(layer, x.ndim)
    sizes = split if split is not None else _split_sizes(layer, None, x.shape[axis], count)
    parts, offset, index = [], 0, [slice(None)] * x.ndim
    for size in sizes:
        index[axis] = slice(offset, offset + size)
        parts.append(x[tuple(index)])
        offset += size
    return parts


class Split(_Copy):
    """Each output a copy of its slice of the input."""
    name = "cupy.split"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (_is(layer, "Split") or _is(layer, "SplitView", "workbench")) and _nhwc_axis_ok(layer)

    def prepare(self, layer, weights):
        state = super().prepare(layer, weights)
        fixed = layer.attrs.get("split") is not None or (len(layer.inputs) > 1 and layer.inputs[1])
        state.extra["split"] = _split_sizes(layer, weights, 0, len(layer.outputs)) if fixed else None
        return state

    def run(self, state, inputs, outputs, stream):
        x = state.args(inputs)[0]
        parts = _split_parts(state.layer, state.extra["split"], x, len(state.layer.outputs))
        cp = cupy()
        for index, out in present_outputs(state.layer, outputs):
            cp.copyto(out, parts[index])
        return outputs


class SplitView(CudaTactic):
    """SplitView as views of the input. Along a leading axis (all dims before it are 1) every part
    is itself contiguous and readers need not handle strides; with `strided=1` (set by
    passes/merge_attention_projections.py, which checked that every reader takes strides) along any
    axis."""
    name = "cupy.split_view"
    source = "cupy"
    is_view = True

    def supports(self, layer: Layer, precision: str) -> bool:
        if not _is(layer, "SplitView", "workbench") or not _nhwc_axis_ok(layer):
            return False
        if not layer.output_shapes or layer.output_shapes[0] is None:
            return False
        shape = layer.output_shapes[0]                      # as stored (NHWC for NHWC layers)
        axis = _stored_axis(layer, len(shape)) % len(shape)
        return bool(layer.attrs.get("strided", 0)) or all(d == 1 for d in shape[:axis])

    def prepare(self, layer, weights):
        return layer

    def view(self, state: Layer, inputs, output_shapes):
        return _split_parts(state, state.attrs.get("split"), inputs[0], len(state.outputs))


# ---- Gather, Cast, Expand -----------------------------------------------------------------------

_GATHER = None


def _gather_kernel():
    """y[o, k, j] = data[o, idx[k] (negative counts from the end), j] on C-contiguous arrays."""
    global _GATHER
    if _GATHER is None:
        _GATHER = cupy().ElementwiseKernel(
            "raw T data, raw I idx, int64 inner, int64 nidx, int64 dim", "T y",
            """
            long long j = i % inner, rest = i / inner;
            long long k = rest % nidx, o = rest / nidx;
            long long id = (long long)idx[k];
            if (id < 0) id += dim;
            y = data[(o * dim + id) * inner + j];
            """, "wb_gather")
    return _GATHER


class Gather(_Copy):
    """Gather (embedding lookup): one thread per output element."""
    name = "cupy.gather"

    def supports(self, layer: Layer, precision: str) -> bool:
        return _is(layer, "Gather") and layer.layout != "NHWC"

    def copy(self, state, args, outs):
        data, idx, out = args[0], args[1], outs[0]
        if not (data.flags.c_contiguous and idx.flags.c_contiguous and out.flags.c_contiguous):
            raise ValueError(f"layer {state.layer.name!r}: Gather needs contiguous data, indices and output")
        axis = int(state.layer.attrs.get("axis", 0))
        axis = axis + data.ndim if axis < 0 else axis
        inner = int(np.prod(data.shape[axis + 1:], dtype=np.int64))
        _gather_kernel()(data, idx, inner, max(int(idx.size), 1), data.shape[axis], out)


class Cast(_Copy):
    """Cast between float32/float16/int64/int32/bool (numpy's conversion rules, as the oracle)."""
    name = "cupy.cast"
    _KINDS = {"float32", "float16", "int64", "int32", "bool"}

    def supports(self, layer: Layer, precision: str) -> bool:
        from workbench.ir.dtypes import np_dtype
        if not _is(layer, "Cast") or "to" not in layer.attrs:
            return False
        try:
            return np_dtype(int(layer.attrs["to"])).name in self._KINDS
        except Exception:
            return False

    def copy(self, state, args, outs):
        cupy().copyto(outs[0], args[0], casting="unsafe")


class Expand(_Copy):
    """Expand: the input broadcast to the output's shape."""
    name = "cupy.expand"

    def supports(self, layer: Layer, precision: str) -> bool:
        return _is(layer, "Expand") and layer.layout != "NHWC"

    def copy(self, state, args, outs):
        cupy().copyto(outs[0], args[0])


for _tactic in (Concat(), Split(), SplitView(), Gather(), Cast(), Expand()):
    register(_tactic)
