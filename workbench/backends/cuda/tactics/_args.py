"""Small helpers the op-family tactics share: weights uploaded once, layer inputs resolved to
device arrays, outputs matched to the layer's output names, and the NCHW -> NHWC axis map."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy

__all__ = ["NHWC_AXIS", "nhwc_axis", "upload_weights", "resolve_inputs", "present_outputs",
           "host_weight", "ints_of"]

# NCHW axis -> the axis holding the same dimension in an NHWC array (N->0, C->3, H->1, W->2)
NHWC_AXIS = (0, 3, 1, 2)


def nhwc_axis(axis: int, rank: int, layout: str) -> int:
    """A (possibly negative) ONNX axis of a rank-`rank` tensor, as an axis of its stored array."""
    axis = axis + rank if axis < 0 else axis
    return NHWC_AXIS[axis] if layout == "NHWC" and rank == 4 else axis


def host_weight(layer: Layer, weights: dict, index: int) -> np.ndarray | None:
    """The numpy value of input `index` when it is a weight (a constant), else None."""
    if index >= len(layer.inputs) or not layer.inputs[index]:
        return None
    value = weights.get(layer.inputs[index])
    return None if value is None else np.asarray(value)


def ints_of(layer: Layer, weights: dict, index: int, what: str) -> list[int] | None:
    """A constant int list (Slice starts, Split sizes, Reduce axes) read from a weight input;
    None when the input is omitted; a clear error when it is computed at run time."""
    if index >= len(layer.inputs) or not layer.inputs[index]:
        return None
    value = host_weight(layer, weights, index)
    if value is None:
        raise ValueError(f"layer {layer.name!r} ({layer.qualified_op}): {what} (input {index}, "
                         f"{layer.inputs[index]!r}) must be a constant for the CUDA tactics; it is computed "
                         f"at run time (use the fallback tactic)")
    return [int(v) for v in value.reshape(-1)]


def upload_weights(layer: Layer, weights: dict, transform: Callable[[int, np.ndarray], np.ndarray] | None = None
                   ) -> dict[int, Any]:
    """Input index -> device copy of each weight input (optionally re-laid out by `transform`), so
    `run` never depends on how the runtime passes constants."""
    cp = cupy()
    uploaded = {}
    for index, name in enumerate(layer.inputs):
        if name and name in weights:
            value = np.asarray(weights[name])
            if transform is not None:
                value = transform(index, value)
            uploaded[index] = cp.asarray(np.ascontiguousarray(value))
    return uploaded


def resolve_inputs(uploaded: dict[int, Any], inputs: Sequence[Any], count: int) -> list[Any]:
    """The layer's inputs as device arrays: prepared weights first, then what `run` was given."""
    given = list(inputs) + [None] * max(0, count - len(inputs))
    return [uploaded.get(i, given[i]) for i in range(count)]


def present_outputs(layer: Layer, outputs: Sequence[Any]) -> list[tuple[int, Any]]:
    """(output index of the layer, array) of each output the model asks for. `outputs` either
    lines up with `layer.outputs` (None at omitted ones) or lists only the present ones."""
    outputs = list(outputs)
    if len(outputs) == len(layer.outputs):
        return [(i, o) for i, o in enumerate(outputs) if o is not None and layer.outputs[i]]
    present = [i for i, name in enumerate(layer.outputs) if name]
    return list(zip(present, outputs))
