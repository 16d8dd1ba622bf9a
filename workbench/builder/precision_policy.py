"""Which precision each layer runs in: allowed sets, strict mode and per-layer overrides.

TensorRT's builder flags (FP16, INT8, ...) name what a layer MAY use; fp32 is always allowed, and
the builder times each layer in each allowed precision and keeps the fastest. We do the same:

    BuilderConfig(precision="fp16")              every layer that can: fp16 (a name forces it)
    BuilderConfig(precision={"fp16", "int8"})    per layer, the fastest of fp32, fp16, int8 it supports
    ... strict=True (or builder_level=0)         no timing: the lowest allowed it supports
                                                  (int8, then fp16, bf16, tf32, fp32)
    BuilderConfig(layer_precisions={"conv1": "fp32", "re:^/layer4/": "fp16", "op:Softmax": "fp32"})
                                                 overrides: exact name (of a layer or of an original node
                                                 it came from) beats "re:" (searched in those names),
                                                 which beats "op:" (the layer's op type)

Every layer's decision and its reason ("fastest of fp32 0.0110 ms, fp16 0.0320 ms", "override
'op:Softmax'", "only fp32 applies; fp16: sums exp() in the input dtype ...") land in the network's
meta["precision"]["layers"] (`engine.precision_report()`); on the CPU backend the fastest is usually
fp32, and the report says so. Cast / RoundTF32 layers at precision boundaries are explicit layers
(builder/mixed_precision.py). Reformat costs are not part of a layer's timing (TensorRT weighs them).

int8 needs Q/DQ nodes: `decide_precisions` runs on the float graph, `wb.build` then calibrates and
quantizes only the layers that chose int8 and hands the decisions back to `build_network`.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from typing import Mapping

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.config import PRECISIONS, BuilderConfig
from workbench.builder.mixed_precision import assign_layer_precisions
from workbench.builder.network import IOSpec
from workbench.builder.precision import F32, _data_dependent, _plan_low, _plan_tf32, tensor_dtypes
from workbench.builder.precision_timing import time_at_precisions
from workbench.builder.timing_cache import TimingCache
from workbench.errors import BuildError
from workbench.ir import WORKBENCH_DOMAIN
from workbench.quant.insert_qdq import QUANTIZABLE_OPS

__all__ = ["LayerChoice", "LOWEST_FIRST", "allowed_precisions", "uses_policy", "needs_int8", "describe",
           "match_overrides", "decide_precisions", "layer_support", "apply_policy"]
log = logging.getLogger(__name__)

LOWEST_FIRST = ("int8", "fp16", "bf16", "tf32", "fp32")
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


@dataclasses.dataclass
class LayerChoice:
    """One layer's precision and why. `output` (the layer's first output tensor) names the layer
    across re-lowerings: Q/DQ insertion adds nodes and may change generated layer names, not outputs."""
    layer: str
    op: str
    output: str
    precision: str
    reason: str
    times_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def allowed_precisions(config: BuilderConfig) -> tuple[str, ...]:
    """The precisions a layer may get, lowest first; fp32 always."""
    asked = {config.precision} if isinstance(config.precision, str) else set(config.precision)
    return tuple(p for p in LOWEST_FIRST if p in asked | {"fp32"})


def uses_policy(config: BuilderConfig) -> bool:
    """Per-layer decisions are needed: an allowed set, or overrides."""
    return not isinstance(config.precision, str) or bool(config.layer_precisions)


def needs_int8(config: BuilderConfig) -> bool:
    return "int8" in allowed_precisions(config) or "int8" in (config.layer_precisions or {}).values()


def describe(config: BuilderConfig) -> str:
    """The network's precision label: the name, or the allowed set with fp32, as "fp32+fp16+int8"."""
    if isinstance(config.precision, str):
        return config.precision
    return "+".join(p for p in PRECISIONS if p in config.precision | {"fp32"})


def match_overrides(layers: list[Layer], overrides: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """layer name -> (precision, selector) of the most specific selector matching it.

    Raises BuildError naming every selector that matches no layer, with a few layer names."""
    ranked: dict[str, tuple[int, str, str]] = {}
    unmatched = []
    for selector, precision in overrides.items():
        rank, hits = _select(layers, selector)
        if not hits:
            unmatched.append(selector)
        for name in hits:
            if name not in ranked or rank >= ranked[name][0]:       # later selectors of a rank win
                ranked[name] = (rank, precision, selector)
    if unmatched:
        sample = ", ".join(f"{l.name!r} ({l.qualified_op})" for l in layers[:6])
        what = f"selector {unmatched[0]!r} matches" if len(unmatched) == 1 else \
            f"selectors {', '.join(repr(s) for s in unmatched)} match"
        raise BuildError(f"layer_precisions: {what} no layer; layers "
                         f"are {sample}{', ...' if len(layers) > 6 else ''} (select by name, 're:<regex>' or "
                         f"'op:<op type>')")
    return {name: (precision, selector) for name, (_, precision, selector) in ranked.items()}


def _select(layers: list[Layer], selector: str) -> tuple[int, list[str]]:
    if selector.startswith("op:"):
        op = selector[3:]
        return 0, [l.name for l in layers if op in (l.op, l.qualified_op)]
    if selector.startswith("re:"):
        pattern = re.compile(selector[3:])
        return 1, [l.name for l in layers if any(pattern.search(n) for n in (l.name, *l.source_nodes))]
    return 2, [l.name for l in layers if selector == l.name or selector in l.source_nodes]


def decide_precisions(layers: list[Layer], weights: dict[str, np.ndarray], inputs: list[IOSpec],
                      config: BuilderConfig, backend, batch: int = 1, *, int8_ok: bool = False,
                      cache: TimingCache | None = None) -> dict[str, LayerChoice]:
    """Layer name -> LayerChoice for a lowered float32 network (see the module docstring).

    Args:
        batch: the batch the layers are timed at (the profile's opt).
        int8_ok: the caller quantizes the layers that choose int8 (wb.build does, after calibrating);
            otherwise only layers that already read DequantizeLinear outputs are int8.
        cache: the TimingCache the timings go through.
    """
    overrides = match_overrides(layers, config.layer_precisions or {})
    allowed = allowed_precisions(config)
    dtypes = tensor_dtypes(layers, weights, inputs)
    data = _data_dependent(layers, inputs)
    shapes = _shapes(layers, weights, inputs, batch)
    opset = max((l.opset for l in layers if l.domain in ("", "ai.onnx")), default=17)
    timed = not isinstance(config.precision, str) and not config.strict and config.builder_level > 0
    dequantized = {l.outputs[0] for l in layers if l.op == "DequantizeLinear" and l.outputs}
    choices = {}
    for layer in layers:
        support = {p: _why_not(layer, p, dtypes, data) for p in allowed}
        if not int8_ok and not support.get("int8", "x"):
            support["int8"] = "is not quantized in the model (calibrated int8 needs wb.build)"
        can = [p for p in allowed if not support[p]]
        if layer.name in overrides:
            precision, selector = overrides[layer.name]
            why_not = _why_not(layer, precision, dtypes, data) or (
                "" if int8_ok or precision != "int8" else "is not quantized: int8 needs calibration (wb.build does it)")
            choice = _override(layer, precision, selector, why_not)
        elif layer.op not in _QDQ and any(n in dequantized for n in layer.inputs[:2]):
            choice = LayerChoice(layer.name, layer.qualified_op, "", "int8", "explicitly quantized: reads "
                                 "DequantizeLinear outputs (Q/DQ in the model)")
        elif isinstance(config.precision, str):
            why = support[config.precision]
            choice = LayerChoice(layer.name, layer.qualified_op, "", config.precision if not why else "fp32",
                                 f"precision={config.precision!r}" + (f"; fp32: {why}" if why else ""))
        elif len(can) == 1 or not timed:
            if len(can) == 1:
                reason = "only fp32 applies" + "".join(f"; {p}: {w}" for p, w in support.items() if w)
            elif config.strict:
                reason = "strict: lowest allowed it supports"
            else:
                reason = "builder_level 0: no timing; lowest allowed it supports"
            choice = LayerChoice(layer.name, layer.qualified_op, "", can[0], reason)
        else:
            times = time_at_precisions(layer, can, weights, shapes, dtypes, backend, config, opset, cache)
            best = min(times, key=times.get) if times else "fp32"
            listing = ", ".join(f"{p} {t:.4f} ms" for p, t in sorted(times.items(), key=lambda kv: kv[1]))
            choice = LayerChoice(layer.name, layer.qualified_op, "", best,
                                 f"fastest of {listing}" if times else "could not be timed; fp32", times)
        choice.output = next((o for o in layer.outputs if o), layer.name)
        choices[layer.name] = choice
    counts = Counter(c.precision for c in choices.values())
    log.info("precision per layer (%s): %s", describe(config), ", ".join(f"{n} {p}" for p, n in counts.most_common()))
    for choice in choices.values():
        log.debug("  %s (%s): %s, %s", choice.layer, choice.op, choice.precision, choice.reason)
    return choices


def _override(layer: Layer, precision: str, selector: str, why_not: str) -> LayerChoice:
    if not why_not:
        return LayerChoice(layer.name, layer.qualified_op, "", precision, f"override {selector!r}")
    if precision == "int8" and selector == layer.name:
        raise BuildError(f"layer_precisions[{selector!r}] = 'int8', but layer {layer.name!r} "
                         f"({layer.qualified_op}) {why_not}")
    return LayerChoice(layer.name, layer.qualified_op, "", precision if precision != "int8" else "fp32",
                       f"override {selector!r} asks {precision}, but it {why_not}")


def layer_support(layers: list[Layer], weights: dict[str, np.ndarray], inputs: list[IOSpec],
                  precision: str) -> dict[str, str]:
    """Layer name -> "" when the layer can run in `precision` (int8: once quantized), else why not.
    Sensitivity analysis and automatic mixed precision pick their candidate layers with it."""
    dtypes, data = tensor_dtypes(layers, weights, inputs), _data_dependent(layers, inputs)
    return {layer.name: _why_not(layer, precision, dtypes, data) for layer in layers}


def _why_not(layer: Layer, precision: str, dtypes: dict, data: dict) -> str:
    """"" when `layer` can run in `precision`, else why not."""
    key = (layer.domain if layer.domain != "ai.onnx" else "", layer.op)
    if precision == "fp32":
        return ""
    if precision == "int8":
        ok = key[1] in QUANTIZABLE_OPS and key[0] == (WORKBENCH_DOMAIN if key[1].startswith("Fused") else "")
        if not ok:
            return f"has no int8 path (int8 runs {', '.join(QUANTIZABLE_OPS)})"
        operands = layer.inputs[:2]
        if len(operands) < 2 or any(dtypes.get(n) != F32 for n in operands):
            return "has no two float32 operands to quantize"
        return ""
    if not any(dtypes.get(n) == F32 for n in (*layer.inputs, *layer.outputs) if n):
        return "has no float32 tensor"
    plan = _plan_tf32(layer, dtypes) if precision == "tf32" else _plan_low(layer, dtypes, data, precision)
    if plan.precision != precision:
        return plan.reason or "has no matmul operands to round to TF32"
    return ""


def _shapes(layers: list[Layer], weights: dict, inputs: list[IOSpec], batch: int) -> dict[str, tuple]:
    shapes = {s.name: tuple(batch if d is None else d for d in s.shape) for s in inputs if s.shape is not None}
    shapes.update((name, value.shape) for name, value in weights.items())
    for layer in layers:
        shapes.update((n, s) for n, s in zip(layer.outputs, layer.output_shapes) if n and s is not None)
    return shapes


def apply_policy(layers: list[Layer], weights: dict[str, np.ndarray], inputs: list[IOSpec], outputs: list[IOSpec],
                 config: BuilderConfig, backend, decided: Mapping[str, LayerChoice] | None = None, batch: int = 1
                 ) -> tuple[list[Layer], dict[str, np.ndarray], dict]:
    """Decide (or take `decided`, keyed by output tensor) and assign every layer's precision.

    Returns (layers with reformat layers, weights, the meta["precision"] report)."""
    if decided is None:
        cache = TimingCache(config.timing_cache)
        choices = decide_precisions(layers, weights, inputs, config, backend, batch, cache=cache)
        cache.save()
    else:
        choices = {}
        for layer in layers:
            key = next((o for o in layer.outputs if o), layer.name)
            if key in decided:
                choices[layer.name] = dataclasses.replace(decided[key], layer=layer.name)
            elif layer.op in _QDQ:
                choices[layer.name] = LayerChoice(layer.name, layer.qualified_op, key, "int8",
                                                  "quantizes or dequantizes an int8 layer's operand")
    precisions = {name: c.precision for name, c in choices.items()}
    new_layers, new_weights, kept = assign_layer_precisions(layers, weights, inputs, outputs, precisions)
    report = {}
    for layer in new_layers:
        choice = choices.get(layer.name)
        if choice is None:
            reason = "reformat at a precision boundary" if layer.op in ("Cast", "RoundTF32") else "inserted"
            report[layer.name] = {"precision": layer.precision, "reason": reason, "times_ms": {}}
            continue
        reason = choice.reason + (f"; runs {layer.precision}: {kept[layer.name]}" if layer.name in kept else "")
        report[layer.name] = {"precision": layer.precision, "reason": reason, "times_ms": dict(choice.times_ms)}
    meta = {"requested": describe(config), "allowed": list(allowed_precisions(config)), "strict": config.strict,
            "overrides": dict(config.layer_precisions or {}), "layers": report}
    return new_layers, new_weights, meta

