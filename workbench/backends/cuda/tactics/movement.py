"""Data movement on the GPU: reformat, transpose, views (reshape and friends) and slice; the
joins and lookups (concat, split, gather, cast, expand) are in joins.py, on the base defined here.

None of these does arithmetic, so each is a CuPy copy into the preallocated output
(`cupy.copyto` launches one elementwise copy over strided views and allocates nothing) or, where
the bytes already sit in the right order, a view (`is_view`): Reshape, Flatten, Squeeze,
Unsqueeze, Identity, and a Reformat that only moves size-1 dims (an NCHW [N, C, 1, 1] is already
NHWC). Channels-last layers are accepted only where the op is layout-free (Identity).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.shape import slice_indices
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import ints_of, present_outputs, resolve_inputs, upload_weights
from workbench.backends.cuda.tactics.reformat import quantizes

__all__: list[str] = []

_VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}


def _is(layer: Layer, op: str, domain: str = "") -> bool:
    return layer.op == op and (layer.domain in ("", "ai.onnx") if domain == "" else layer.domain == domain)


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: dict[int, Any]
    extra: dict = dataclasses.field(default_factory=dict)

    def args(self, inputs):
        return resolve_inputs(self.weights, inputs, len(self.layer.inputs))


class _Copy(CudaTactic):
    """Base: weights uploaded once; subclasses fill `copy`."""
    source = "cupy"

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        return _State(layer, upload_weights(layer, weights))

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        self.copy(state, state.args(inputs), [o for _, o in present_outputs(state.layer, outputs)])
        return outputs

    def copy(self, state: _State, args: list, outs: list) -> None:
        raise NotImplementedError


# ---- Reformat (workbench::Reformat, attr perm) and Transpose ------------------------------------

def _perm(layer: Layer, rank: int | None = None) -> list[int]:
    perm = layer.attrs.get("perm")
    if perm is None:
        if rank is None:
            raise ValueError(f"layer {layer.name!r}: Transpose without perm needs the input rank")
        return list(range(rank))[::-1]
    return [int(p) for p in perm]


class Transpose(_Copy):
    """Reformat between layouts, or a Transpose: a strided copy (x.transpose(perm) -> out)."""

    def __init__(self, name: str, op: str, domain: str):
        self.name, self.op, self.domain = name, op, domain

    def supports(self, layer: Layer, precision: str) -> bool:
        if not _is(layer, self.op, self.domain) or quantizes(layer):
            return False
        return self.op == "Reformat" or layer.layout != "NHWC"

    def copy(self, state, args, outs):
        x = args[0]
        cupy().copyto(outs[0], x.transpose(_perm(state.layer, x.ndim)), casting="unsafe")


def _moves_only_unit_dims(perm: list[int], out_shape) -> bool:
    """True when the dims a permutation moves are all size 1, so the bytes stay in order:
    out.shape[i] = in.shape[perm[i]], and the non-unit dims must keep their relative order."""
    kept = [p for p, d in zip(perm, out_shape) if d != 1]      # None (unknown) counts as non-unit
    return kept == sorted(kept)


class ReformatView(CudaTactic):
    """A Reformat whose permutation only moves size-1 dims: the input, reshaped."""
    name = "cupy.reformat_view"
    source = "cupy"
    is_view = True

    def supports(self, layer: Layer, precision: str) -> bool:
        if not _is(layer, "Reformat", "workbench") or "perm" not in layer.attrs or quantizes(layer):
            return False
        shapes = layer.output_shapes
        if not shapes or shapes[0] is None or len(shapes[0]) != len(layer.attrs["perm"]):
            return False
        return _moves_only_unit_dims(_perm(layer), shapes[0])

    def prepare(self, layer, weights):
        return layer

    def view(self, state: Layer, inputs, output_shapes):
        x, shape = inputs[0], tuple(output_shapes[0])
        if not _moves_only_unit_dims(_perm(state), shape) or not x.flags.c_contiguous:
            raise ValueError(f"layer {state.name!r}: Reformat {x.shape} -> {shape} with perm {_perm(state)} "
                             f"is no view here (contiguous input: {x.flags.c_contiguous}); use cupy.reformat")
        return [x.reshape(shape)]


# ---- Reshape / Flatten / Squeeze / Unsqueeze / Identity ------------------------------------------

class ReshapeView(CudaTactic):
    """Same bytes, new shape: the input itself (needs a C-contiguous input)."""
    name = "cupy.reshape_view"
    source = "cupy"
    is_view = True

    def supports(self, layer: Layer, precision: str) -> bool:
        return layer.op in _VIEW_OPS and layer.domain in ("", "ai.onnx") and (
            layer.layout != "NHWC" or layer.op == "Identity")

    def prepare(self, layer, weights):
        return layer

    def view(self, state: Layer, inputs, output_shapes):
        x, shape = inputs[0], tuple(output_shapes[0])
        if x.flags.c_contiguous:
            return [x.reshape(shape)]
        strides = _split_last_axis(x, shape)
        if strides is None:
            raise ValueError(f"layer {state.name!r} ({state.op}): input {state.inputs[0]!r} is a strided view "
                             f"{x.shape} strides {x.strides}; a reshape of it to {shape} is a copy: use cupy.reshape")
        from cupy.lib.stride_tricks import as_strided
        return [as_strided(x, shape, strides)]


def _split_last_axis(x, shape: tuple) -> tuple | None:
    """Strides of `shape` as a view of the strided `x` when it keeps x's leading dims and only splits
    its contiguous last axis (a column block of a wider matrix into heads); else None."""
    lead = x.ndim - 1
    if x.ndim == 0 or x.strides[-1] != x.itemsize or tuple(shape[:lead]) != tuple(x.shape[:lead]):
        return None
    tail = shape[lead:]
    if int(np.prod(tail, dtype=np.int64)) != x.shape[-1]:
        return None
    inner = [x.itemsize]
    for d in reversed(tail[1:]):
        inner.insert(0, inner[0] * d)
    return tuple(x.strides[:lead]) + tuple(inner)


class ReshapeCopy(_Copy):
    """The same ops as a copy, for a strided input (e.g. a SplitView output)."""
    name = "cupy.reshape"

    def supports(self, layer: Layer, precision: str) -> bool:
        return ReshapeView.supports(self, layer, precision)

    def copy(self, state, args, outs):
        x, out = args[0], outs[0]
        cupy().copyto(out.reshape(x.shape), x)        # `out` is contiguous: its reshape is a view


# ---- Slice --------------------------------------------------------------------------------------

class Slice(_Copy):
    """Static starts/ends/axes/steps (attributes before opset 10, constant inputs after)."""
    name = "cupy.slice"

    def supports(self, layer: Layer, precision: str) -> bool:
        return _is(layer, "Slice") and layer.layout != "NHWC"

    def prepare(self, layer, weights):
        state = super().prepare(layer, weights)
        if layer.opset < 10:
            starts, ends, axes, steps = layer.attrs["starts"], layer.attrs["ends"], layer.attrs.get("axes"), None
        else:
            starts, ends = ints_of(layer, weights, 1, "starts"), ints_of(layer, weights, 2, "ends")
            axes, steps = ints_of(layer, weights, 3, "axes"), ints_of(layer, weights, 4, "steps")
        axes = list(range(len(starts))) if axes is None else axes
        state.extra["spec"] = list(zip(axes, starts, ends, steps or [1] * len(starts)))
        return state

    def copy(self, state, args, outs):
        x = args[0]
        index = [slice(None)] * x.ndim
        for axis, start, end, step in state.extra["spec"]:
            axis = axis + x.ndim if axis < 0 else axis
            index[axis] = slice_indices(x.shape[axis], int(start), int(end), int(step))
        cupy().copyto(outs[0], x[tuple(index)])


for _tactic in (Transpose("cupy.reformat", "Reformat", "workbench"), ReformatView(),
                Transpose("cupy.transpose", "Transpose", ""), ReshapeView(), ReshapeCopy(), Slice()):
    register(_tactic)
