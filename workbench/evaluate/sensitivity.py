"""Sensitivity analysis: which layers lose accuracy when they alone run in a low precision.

One build and one evaluation per candidate layer (that layer in `precision`, every other layer
fp32), so the delta of each row is that layer's own cost; the table is sorted by harm, the most
harmful layer first. It is what automatic mixed precision (`wb.build(..., accuracy_budget=)`)
keeps at a higher precision first, and `workbench.viz.sensitivity_plots.plot_sensitivity` draws it.

Example:
    >>> top1 = lambda engine: 100 * accuracy(predict(engine, images, 64), labels)
    >>> df = sensitivity(graph, top1, "int8", calibration_data=[{"input": train[:100]}])
    >>> df[["layer", "op", "metric", "delta"]].head(3)
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import pandas as pd

from workbench.builder import BuilderConfig
from workbench.ir import Graph, load
from workbench.runtime.amp import SENSITIVITY_COLUMNS, layer_sensitivity

__all__ = ["sensitivity", "COLUMNS"]

COLUMNS = SENSITIVITY_COLUMNS            # layer, op, precision, metric, delta (= metric - fp32 metric)


def sensitivity(graph: Graph | Any, eval_fn: Callable[[Any], float], precision: str = "int8", *,
                calibration_data: Iterable[dict] | None = None, layers: Iterable[str] | None = None,
                config: BuilderConfig | None = None) -> pd.DataFrame:
    """One row per layer: the metric with only that layer in `precision`, and its delta against FP32.

    Args:
        graph: the model (anything `wb.load` accepts); optimize it first to measure the fused layers.
        eval_fn: engine -> metric, higher is better (e.g. top-1 accuracy in percent points).
        precision: "int8" (needs calibration_data, or a calibration_cache in `config`), "fp16", "bf16"
            or "tf32".
        calibration_data: for int8: feed dicts; calibrated once, reused for every layer.
        layers: layer names to try (default: every layer that can run in `precision`).
        config: shapes (batch_size / profile), calibrator, calibration cache.

    Returns:
        The DataFrame, sorted by delta (most harmful first); `df.attrs["reference"]` is the FP32 metric.
    """
    if not isinstance(graph, Graph):
        graph = load(graph)
    rows, reference = layer_sensitivity(graph, eval_fn, precision, config=config,
                                        calibration_data=calibration_data, layers=layers)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["reference"] = reference
    return df
