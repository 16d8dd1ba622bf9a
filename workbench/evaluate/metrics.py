"""Accuracy and latency measurement shared by the demo, notebooks, CLI and benchmarks.

Views start from a DataFrame (one row per measurement, dotted stable column names) so the
notebook plots, the CLI and later the HTML report read the same table.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from workbench.runtime import Engine

__all__ = ["accuracy", "predict", "latency", "latency_table"]


def predict(engine: Engine, images: np.ndarray, batch: int, input_name: str | None = None,
            output_name: str | None = None) -> np.ndarray:
    """Run `images` through the engine in chunks of `batch` (the last chunk may be smaller,
    which the engine's profile must allow) and return the concatenated first output."""
    input_name = input_name or engine.inputs[0].name
    output_name = output_name or engine.outputs[0].name
    context = engine.create_context()
    chunks = [context.run({input_name: images[i:i + batch]})[output_name] for i in range(0, len(images), batch)]
    return np.concatenate(chunks)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def latency(run: Callable[[], object], warmup: int = 3, iters: int = 30) -> dict[str, float]:
    """Median and tail latency of `run()` in milliseconds (host clock; GPU backends sync inside run)."""
    for _ in range(warmup):
        run()
    times = np.empty(iters)
    for i in range(iters):
        start = time.perf_counter()
        run()
        times[i] = (time.perf_counter() - start) * 1e3
    return {"latency.median_ms": float(np.median(times)), "latency.p90_ms": float(np.percentile(times, 90)),
            "latency.p99_ms": float(np.percentile(times, 99)), "latency.mean_ms": float(times.mean())}


def latency_table(engine: Engine, make_feeds: Callable[[int], dict], batch_sizes: list[int],
                  warmup: int = 3, iters: int = 30) -> pd.DataFrame:
    """One row per batch size: latency percentiles and throughput (items per second)."""
    context = engine.create_context()
    rows = []
    for batch in batch_sizes:
        feeds = make_feeds(batch)
        stats = latency(lambda: context.run(feeds), warmup, iters)
        rows.append({"batch": batch, **stats, "throughput.per_s": batch * 1e3 / stats["latency.median_ms"]})
    return pd.DataFrame(rows)
