"""How long one layer takes at each precision it may run in: the measurements behind an allowed
precision set (`BuilderConfig(precision={"fp16", "int8"})`).

A layer at precision p is timed as it would run in the engine, minus the reformat layers at its
boundaries (those depend on the neighbours' choices, which TensorRT also times separately):

    fp32             the layer itself
    fp16, bf16       the layer on low-precision inputs and converted weights
    tf32             the layer on TF32-rounded weights, plus the RoundTF32 of its activation operand
    int8             Q + DQ of the activation, DQ of the int8 weight (per output channel), and the
                     layer on the dequantized values: what the backend runs for a Q/DQ layer (a GPU
                     backend fuses the group into one integer kernel; the CPU runs it as written,
                     so int8 rarely wins on the CPU)

Each layer of that small network is timed by the autotuner's `time_layer` (fastest valid tactic,
median of several runs on random inputs of the profile's shapes), through the build's TimingCache,
so a rebuild with a warm cache times nothing here either.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.autotune import time_layer
from workbench.builder.config import BuilderConfig
from workbench.builder.network import IOSpec
from workbench.builder.precision import F32, assign_precision
from workbench.builder.timing_cache import TimingCache
from workbench.ir.dtypes import np_dtype
from workbench.quant.quantize import quantize, weight_scales

__all__ = ["time_at_precisions", "int8_group", "weight_axis"]
log = logging.getLogger(__name__)


def time_at_precisions(layer: Layer, precisions: list[str], weights: dict[str, np.ndarray],
                       shapes: dict[str, tuple], dtypes: dict, backend, config: BuilderConfig,
                       onnx_opset: int, cache: TimingCache | None = None) -> dict[str, float]:
    """Median milliseconds of `layer` at each of `precisions`; a precision that cannot be timed
    (unknown shapes, every tactic refused) is left out and logged."""
    level = max(config.builder_level, 1)

    def timer(member: Layer, member_weights: dict, specs: dict) -> float:
        return time_layer(member, member_weights, specs, backend, level=level, cache=cache)[1]
    out = {}
    for precision in precisions:
        try:
            group, group_weights, counted = _candidate(layer, precision, weights, shapes, dtypes, onnx_opset)
            out[precision] = _time_group(group, group_weights, counted, shapes, dtypes, timer)
        except Exception as exc:       # noqa: BLE001  (timing is advisory; the choice says what was measured)
            log.debug("%s at %s: not timed (%s: %s)", layer.name, precision, type(exc).__name__, exc)
    return out


def _candidate(layer: Layer, precision: str, weights: dict[str, np.ndarray], shapes: dict[str, tuple],
               dtypes: dict, onnx_opset: int) -> tuple[list[Layer], dict[str, np.ndarray], set[str]]:
    """The small network of `layer` at `precision`, its weights, and the names of the layers that
    count (all but the reformat Casts at its boundary, which only make the inputs' dtypes)."""
    local = {n: weights[n] for n in layer.inputs if n in weights}
    if precision == "int8":
        group, group_weights = int8_group(layer, local, onnx_opset)
        return group, group_weights, {l.name for l in group}
    acts = [n for n in dict.fromkeys(layer.inputs) if n and n not in local]
    ins = [IOSpec(n, dtypes.get(n) or F32, shapes.get(n)) for n in acts]
    outs = [IOSpec(n, dtypes.get(n) or F32, shapes.get(n)) for n in layer.outputs if n]
    mini, converted = assign_precision([layer], local, ins, outs, precision)
    boundary = {f"{n}/reformat" for n in (*acts, *layer.outputs)}
    return mini, converted, {l.name for l in mini if l.name not in boundary or l.op != "Cast"}


def _time_group(group: list[Layer], weights: dict[str, np.ndarray], counted: set[str], shapes: dict[str, tuple],
                dtypes: dict, timer) -> float:
    """Sum of the medians of the counted layers. Tensors the group makes get their producer's
    shape and dtype; the others are the network's activations."""
    specs_of: dict[str, tuple[tuple, np.dtype]] = {n: (shapes.get(n), dtypes.get(n) or F32) for n in shapes}
    total = 0.0
    for layer in group:
        specs = {n: specs_of.get(n, (None, F32)) for n in layer.inputs if n and n not in weights}
        unknown = [n for n, (shape, _) in specs.items() if shape is None or not all(isinstance(d, int) for d in shape)]
        if unknown:
            raise ValueError(f"tensors {unknown} have no static shape")
        if layer.name in counted:
            total += timer(layer, weights, {n: (shape, np.dtype(dt).name) for n, (shape, dt) in specs.items()})
        first = next(iter(specs.values()), (None, F32))[0]
        shapes_out = list(layer.output_shapes) + [None] * len(layer.outputs)
        for name, shape in zip(layer.outputs, shapes_out):
            if name:
                specs_of[name] = (shape or first, _output_dtype(layer, specs))
    return total


def _output_dtype(layer: Layer, specs: dict) -> np.dtype:
    if layer.op == "Cast":
        return np_dtype(layer.attrs["to"])
    if layer.op == "QuantizeLinear":
        return np.dtype(np.int8)
    floats = [np.dtype(d) for _, d in specs.values() if np.dtype(d).kind in "fV"]
    return F32 if layer.op == "DequantizeLinear" or not floats else floats[0]


def int8_group(layer: Layer, weights: dict[str, np.ndarray], onnx_opset: int
               ) -> tuple[list[Layer], dict[str, np.ndarray]]:
    """The Q/DQ layers an int8 `layer` runs with (see the module docstring) and their weights.
    Scales are placeholders (timing does not depend on them); weights are really quantized."""
    opset = max(onnx_opset, 13)
    weights = dict(weights)
    group, inputs = [], list(layer.inputs)
    for slot in (0, 1):
        name = inputs[slot]
        if name in weights:
            w = weights[name]
            axis = weight_axis(layer, w.ndim)
            scale = weight_scales(w, axis)
            weights[f"{name}/int8"], weights[f"{name}/scale"] = quantize(w, scale, axis=axis), scale
            attrs = {"axis": axis} if axis is not None else {}
            group.append(Layer(f"{layer.name}/weight_dq", "DequantizeLinear", [f"{name}/int8", f"{name}/scale"],
                               [f"{name}/dq"], attrs, opset=opset, precision="int8", output_shapes=[w.shape]))
        else:
            weights[f"{name}/scale"], weights[f"{name}/zero"] = np.array(0.05, np.float32), np.array(0, np.int8)
            q_in = [name, f"{name}/scale", f"{name}/zero"]
            group.append(Layer(f"{layer.name}/q{slot}", "QuantizeLinear", q_in, [f"{name}/q"], opset=opset,
                               precision="int8"))
            group.append(Layer(f"{layer.name}/dq{slot}", "DequantizeLinear", [f"{name}/q", *q_in[1:]],
                               [f"{name}/dq"], opset=opset, precision="int8"))
        inputs[slot] = f"{name}/dq"
    group.append(dataclasses.replace(layer, inputs=inputs, precision="int8"))
    return group, weights


def weight_axis(layer: Layer, ndim: int) -> int | None:
    """Output-channel axis of a layer's weight operand (insert_qdq's rule): Conv 0, Gemm transB 0,
    else the last; None for vectors."""
    if ndim < 2:
        return None
    if layer.op in ("Conv", "FusedConv"):
        return 0
    if layer.op in ("Gemm", "FusedGemm") and layer.attrs.get("transB", 0):
        return 0
    return ndim - 1
