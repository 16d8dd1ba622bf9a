"""Sensitivity analysis and automatic mixed precision (AMP): which layers can take the low precision.

Sensitivity: quantize ONE layer at a time (every other layer fp32) and measure the metric. A layer
whose metric drops most is the one low precision hurts most. One build and one evaluation per
candidate layer; int8 calibrates once (the table is cached in a temporary file and read back).

AMP, `wb.build(graph, config, accuracy_budget=0.5, eval_fn=fn)`: the budget is the largest drop of
`eval_fn(engine)` (higher is better, e.g. accuracy in percent points) allowed against the FP32
engine. Start from the requested low precision; while the engine misses the budget, keep the next
most sensitive layer at the fallback precision (the next allowed one above it: fp16 in
{"fp16", "int8"}, else fp32) and evaluate again; if every candidate is kept and the budget still
fails, the kept layers go to fp32, one at a time, in the same order. The engine returned is the
last one evaluated; `engine.meta["amp"]` says what was kept and why (`amp_report(engine)`).

It lives in runtime because it builds and runs engines; `workbench.evaluate.sensitivity` is its
DataFrame face. `precision_report(engine)` (what `engine.precision_report()` shows) reads the
per-layer precision decisions of any engine, AMP's or not.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from workbench.builder import BuilderConfig
from workbench.builder.precision_policy import LOWEST_FIRST, allowed_precisions, layer_support, needs_int8
from workbench.errors import BuildError
from workbench.ir import Graph
from workbench.runtime.mixed_int8 import probe_network

__all__ = ["layer_sensitivity", "build_within_budget", "amp_report", "precision_report", "SENSITIVITY_COLUMNS",
           "AMP_COLUMNS"]
log = logging.getLogger(__name__)

SENSITIVITY_COLUMNS = ["layer", "op", "precision", "metric", "delta"]
AMP_COLUMNS = ["layer", "op", "kept_at", "sensitivity_delta", "metric_after", "reason"]
EvalFn = Callable[[Any], float]


def _build(graph: Graph, config: BuilderConfig):
    from workbench.runtime.engine import build          # engine.py imports this module lazily
    return build(graph, config)


def _quiet(config: BuilderConfig, **changes) -> BuilderConfig:
    """The config for an engine built only to be evaluated: no tactic timing, no cache writes."""
    return dataclasses.replace(config, builder_level=0, timing_cache=None, progress=None, **changes)


def layer_sensitivity(graph: Graph, eval_fn: EvalFn, precision: str = "int8", *, config: BuilderConfig | None = None,
                      calibration_data: Iterable[dict] | None = None, layers: Iterable[str] | None = None,
                      reference: float | None = None) -> tuple[list[dict], float]:
    """(one row per candidate layer, most harmful first; the FP32 metric). See the module docstring.

    Args:
        precision: the low precision tried per layer ("int8", "fp16", "bf16", "tf32").
        config: shapes, calibrator, calibration data or cache (precision fields are ignored).
        calibration_data: for int8, if `config` has none.
        layers: layer names to try (default: every layer that can run in `precision`).
        reference: the FP32 metric, when the caller already has it.
    """
    if precision not in LOWEST_FIRST or precision == "fp32":
        raise BuildError(f"sensitivity precision must be one of {', '.join(LOWEST_FIRST[:-1])}, got {precision!r}")
    config = config or BuilderConfig()
    if calibration_data is not None:
        config = dataclasses.replace(config, calibration_data=calibration_data)
    fp32 = _quiet(config, precision="fp32", strict=False, layer_precisions=None)
    with tempfile.TemporaryDirectory() as tmp:
        if precision == "int8" and config.calibration_cache is None:
            fp32 = dataclasses.replace(fp32, calibration_cache=Path(tmp) / "sensitivity.calib.json")
        probe = probe_network(graph, fp32)
        support = layer_support(probe.layers, probe.weights, probe.inputs, precision)
        names = [l.name for l in probe.layers if not support[l.name]] if layers is None else list(layers)
        unknown = [n for n in names if n not in support]
        if unknown:
            raise BuildError(f"sensitivity: no layer named {unknown}; layers are {list(support)[:8]}")
        refused = {n: support[n] for n in names if support[n]}
        if refused:
            raise BuildError(f"sensitivity: these layers cannot run in {precision}: {refused}")
        if reference is None:
            reference = float(eval_fn(_build(graph, fp32)))
        ops = {l.name: l.qualified_op for l in probe.layers}
        rows = []
        for name in names:
            metric = float(eval_fn(_build(graph, dataclasses.replace(fp32, layer_precisions={name: precision}))))
            rows.append({"layer": name, "op": ops[name], "precision": precision, "metric": metric,
                         "delta": metric - reference})
            log.info("sensitivity %s at %s: %.4f (%+.4f)", name, precision, metric, metric - reference)
    rows.sort(key=lambda r: r["delta"])                 # stable: ties keep the graph order
    return rows, reference


def build_within_budget(graph: Graph, config: BuilderConfig, accuracy_budget: float, eval_fn: EvalFn | None):
    """The AMP engine (see the module docstring)."""
    if eval_fn is None:
        raise BuildError("accuracy_budget needs eval_fn=: a function engine -> metric (higher is better, e.g. "
                         "accuracy in percent points on a validation set)")
    if not accuracy_budget >= 0:
        raise BuildError(f"accuracy_budget must be >= 0 (the largest metric drop allowed), got {accuracy_budget!r}")
    allowed = allowed_precisions(config)
    low = allowed[0]
    fallback = allowed[1] if len(allowed) > 2 else "fp32"      # the next allowed above the lowest, else fp32
    with tempfile.TemporaryDirectory() as tmp:
        if needs_int8(config) and config.calibration_cache is None:
            config = dataclasses.replace(config, calibration_cache=Path(tmp) / "amp.calib.json")
        fp32 = _quiet(config, precision="fp32", strict=False, layer_precisions=None)
        reference = float(eval_fn(_build(graph, fp32)))
        target = reference - accuracy_budget
        engine = _build(graph, config)
        metric = start = float(eval_fn(engine))
        report = {"budget": accuracy_budget, "reference": reference, "target": target, "precision": low,
                  "fallback": fallback, "start_metric": start, "kept": [], "sensitivity": []}
        if metric < target and low != "fp32":
            rows, _ = layer_sensitivity(graph, eval_fn, low, config=config, reference=reference)
            report["sensitivity"] = rows
            engine, metric = _keep_until(graph, config, eval_fn, engine, metric, target, rows, fallback, report)
            if metric < target and fallback != "fp32":
                engine, metric = _keep_until(graph, config, eval_fn, engine, metric, target, rows, "fp32", report)
    report.update(final_metric=metric, met=metric >= target)
    if not report["met"]:
        log.warning("accuracy_budget %.4g not met: %.4f < target %.4f with every candidate kept", accuracy_budget,
                    metric, target)
    log.info("AMP: %s start %.4f, final %.4f (FP32 %.4f, budget %.4g), kept %s", low, start, metric, reference,
             accuracy_budget, [k["layer"] for k in report["kept"]])
    engine.meta["amp"] = report
    return engine


def _keep_until(graph, config, eval_fn, engine, metric, target, rows, keep_at, report):
    """Keep layers (most sensitive first) at `keep_at` until `metric >= target`."""
    overrides = dict(config.layer_precisions or {})
    for row in rows:
        if metric >= target:
            break
        current = next((l.precision for l in engine.layers if l.name == row["layer"]), None)
        if current == keep_at or (keep_at != "fp32" and current != report["precision"]):
            continue                                  # already at the fallback or above it
        overrides[row["layer"]] = keep_at
        before = metric
        engine = _build(graph, dataclasses.replace(config, layer_precisions=dict(overrides)))
        metric = float(eval_fn(engine))
        report["kept"].append({
            "layer": row["layer"], "op": row["op"], "kept_at": keep_at, "sensitivity_delta": row["delta"],
            "metric_after": metric,
            "reason": f"metric {before:.4f} < target {target:.4f}; {row['precision']} alone on this layer changes the "
                      f"metric by {row['delta']:+.4f} (rank {rows.index(row) + 1} of {len(rows)})"})
    return engine, metric


def amp_report(engine) -> pd.DataFrame:
    """One row per layer AMP kept: where, its sensitivity delta, the metric after keeping it, why."""
    return pd.DataFrame((engine.meta.get("amp") or {}).get("kept", []), columns=AMP_COLUMNS)


def precision_report(engine) -> pd.DataFrame:
    """One row per engine layer: layer, op, precision, precision_reason, times_ms (per precision
    timed). Engines built with one precision name and no overrides say just that."""
    decided = (engine.meta.get("precision") or {}).get("layers", {})
    default = f"precision={engine.precision!r}"
    return pd.DataFrame({
        "layer": [l.name for l in engine.layers], "op": [l.qualified_op for l in engine.layers],
        "precision": [l.precision for l in engine.layers],
        "precision_reason": [decided.get(l.name, {}).get("reason", default) for l in engine.layers],
        "times_ms": [dict(decided.get(l.name, {}).get("times_ms", {})) for l in engine.layers]})
