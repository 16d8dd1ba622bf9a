"""Mixed precision: each layer of a lowered float32 network gets its own precision.

`precision.py` plans one precision for the whole network; here each layer is planned with the
rules of its own precision, and the same rewriter makes every change of dtype an explicit layer:

    fp32, int8     read the float32 version of every float input (int8 layers read the outputs of
                   their DequantizeLinear layers: the Q/DQ graph already carries the integer math,
                   which the CPU runs exactly in float32 / float64)
    tf32           both matmul operands rounded to TF32 (a RoundTF32 layer for activations), the
                   rest float32
    fp16, bf16     the low dtype, with precision.py's exceptions (KEEP_FP32 ops, shape arithmetic,
                   ops without a schema) kept in float32 and their reason reported

Where a producer and its reader disagree, the rewriter inserts a Cast "<tensor>/reformat" (fp16 ->
fp32, fp32 -> bf16...) or a RoundTF32 "<tensor>/round_tf32" just before the reader: the reformat
layers TensorRT shows at precision boundaries.

    >>> layers, weights, reasons = assign_layer_precisions(net.layers, net.weights, net.inputs, net.outputs,
    ...                                                    {"conv1": "fp16", "fc": "fp32"})
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Mapping

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.network import IOSpec
from workbench.builder.precision import (_READS_ANY, F32, LOW_DTYPES, _data_dependent, _Plan, _plan_low,
                                         _plan_tf32, _Rewriter, _saturate, _tag, round_to_tf32, tensor_dtypes)
from workbench.errors import BuildError

__all__ = ["assign_layer_precisions", "plan_layer"]
log = logging.getLogger(__name__)

_CONVERT = {"tf32": round_to_tf32, **{tag: (lambda w, dt=dt: _saturate(w, dt)) for tag, dt in LOW_DTYPES.items()}}


def assign_layer_precisions(layers: list[Layer], weights: dict[str, np.ndarray], inputs: list[IOSpec],
                            outputs: list[IOSpec], precisions: Mapping[str, str]
                            ) -> tuple[list[Layer], dict[str, np.ndarray], dict[str, str]]:
    """The network with each layer at `precisions[layer.name]` (default "fp32").

    Returns:
        (layers with inserted Cast / RoundTF32 layers, weights with converted copies where needed,
        {layer name: why it runs in float32 although another precision was asked}).
    """
    unknown = sorted(set(precisions) - {layer.name for layer in layers})
    if unknown:
        raise BuildError(f"precision map names layers the network does not have: {unknown[:5]}; "
                         f"layers are {[l.name for l in layers[:8]]}{'...' if len(layers) > 8 else ''}")
    dtypes = tensor_dtypes(layers, weights, inputs)
    data = _data_dependent(layers, inputs)
    plans = [plan_layer(layer, precisions.get(layer.name, "fp32"), dtypes, data) for layer in layers]
    rewriter = _Rewriter(layers, weights, inputs, outputs)
    rewriter.convert_weights(layers, plans, _CONVERT)
    for layer, plan in zip(layers, plans):
        rewriter.emit(layer, plan)
    rewriter.finish_outputs()
    kept = {layer.name: plan.reason for layer, plan in zip(layers, plans) if plan.reason}
    counts = Counter(layer.precision for layer in rewriter.layers)
    log.info("mixed precision: %s; %d reformat layers inserted; %d layers kept in float32 against the request",
             ", ".join(f"{n} {p}" for p, n in counts.most_common()), len(rewriter.layers) - len(layers), len(kept))
    return rewriter.layers, rewriter.weights, kept


def plan_layer(layer: Layer, precision: str, dtypes: dict, data: dict[str, bool]) -> _Plan:
    """How `layer` runs at `precision`; a plan whose precision is "fp32" although another was asked
    carries the reason (precision.py's rules)."""
    if precision in LOW_DTYPES:
        return _plan_low(layer, dtypes, data, precision)
    reads_any = (layer.domain if layer.domain != "ai.onnx" else "", layer.op) in _READS_ANY   # Shape, Cast
    float_reads = [None if reads_any or not n or dtypes.get(n) != F32 else "fp32" for n in layer.inputs]
    if precision == "tf32":
        plan = _plan_tf32(layer, dtypes)
        reads = [r or f for r, f in zip(plan.reads, float_reads)]
        reason = "" if plan.precision == "tf32" else "no matmul operands to round to TF32"
        return _Plan(plan.precision, reads, plan.writes, reason)
    if precision not in ("fp32", "int8"):
        raise BuildError(f"layer {layer.name!r}: precision {precision!r} cannot be assigned; choose fp32, tf32, "
                         f"{', '.join(LOW_DTYPES)} or int8")
    writes = [_tag(dtypes.get(n)) if n else None for n in layer.outputs]
    return _Plan(precision, float_reads, writes)

