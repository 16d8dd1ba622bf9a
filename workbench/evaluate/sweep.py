"""Precision x batch-size sweep: one tidy DataFrame to compare engines built at each precision.

Each precision's engine is built once, with a profile `(1, max(batch_sizes), max(batch_sizes))`,
so every batch size in the sweep (and the smaller last chunk of the accuracy pass) fits.
Accuracy does not depend on the batch size, so it is measured once per precision and repeated on
that precision's rows. Throughput is `batch * 1000 / latency.median_ms` (items per second).

Example:
    >>> df = sweep(graph, ("fp32", "fp16"), (1, 32), images=images, labels=labels)
    >>> df[["precision", "batch", "latency.median_ms", "accuracy"]]
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

import workbench as wb
from workbench.evaluate.metrics import accuracy, latency, predict

__all__ = ["sweep", "COLUMNS"]

log = logging.getLogger(__name__)

COLUMNS = ["precision", "batch", "latency.median_ms", "latency.p90_ms", "throughput.per_s", "accuracy", "build_s"]


def sweep(graph, precisions: Sequence[str] = ("fp32", "fp16", "int8"), batch_sizes: Sequence[int] = (1, 8, 32), *,
          images: np.ndarray, labels: np.ndarray, input_name: str | None = None,
          calibration_data: Iterable[dict] | None = None, iters: int = 10,
          progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Build one engine per precision and time it at each batch size.

    Args:
        graph: the (ideally already `wb.optimize`d) graph to build.
        precisions: builder precisions, e.g. ("fp32", "tf32", "fp16", "bf16", "int8").
        batch_sizes: batch sizes to time; the engine profile covers 1..max(batch_sizes).
        images, labels: evaluation set for top-1 accuracy; the timed batches are its first rows
            (repeated if there are fewer images than the batch).
        input_name: the engine input fed with `images` (default: the engine's first input).
        calibration_data: feed dicts for int8; without it the builder's BuildError propagates.
        iters: timed runs per (precision, batch) after 3 warm-up runs.
        progress: called as `progress(done, total)` after each (precision, batch) row.

    Returns:
        One row per (precision, batch) with the columns in `COLUMNS`.

    Example:
        >>> sweep(graph, ("fp32", "int8"), (1, 8), images=x, labels=y, calibration_data=[{"input": x[:50]}])
    """
    precisions, batch_sizes = list(precisions), sorted(set(int(b) for b in batch_sizes))
    if not precisions or not batch_sizes:
        raise ValueError("sweep needs at least one precision and one batch size")
    largest = batch_sizes[-1]
    calibration = list(calibration_data) if calibration_data is not None else None  # reused, may be a generator
    total, done, rows = len(precisions) * len(batch_sizes), 0, []
    for precision in precisions:
        config = wb.BuilderConfig(precision=precision, profile=(1, largest, largest),
                                  calibration_data=calibration if precision == "int8" else None)
        start = time.perf_counter()
        engine = wb.build(graph, config)
        build_s = time.perf_counter() - start
        name = input_name or engine.inputs[0].name
        top1 = accuracy(predict(engine, images, largest, input_name=name), labels)
        log.info("%s: built in %.2f s, top-1 %.4f", precision, build_s, top1)
        context = engine.create_context()
        for batch in batch_sizes:
            feeds = {name: images[np.arange(batch) % len(images)]}
            stats = latency(lambda: context.run(feeds), iters=iters)
            rows.append({"precision": precision, "batch": batch, "latency.median_ms": stats["latency.median_ms"],
                         "latency.p90_ms": stats["latency.p90_ms"],
                         "throughput.per_s": batch * 1e3 / stats["latency.median_ms"],
                         "accuracy": top1, "build_s": build_s})
            done += 1
            if progress is not None:
                progress(done, total)
    return pd.DataFrame(rows, columns=COLUMNS)
