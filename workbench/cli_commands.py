"""`workbench bench | compare | sweep`: the measuring verbs of the CLI, and the data they feed.

Each verb builds through `wb.build` and prints the same DataFrame a notebook gets
(`latency_table`, `wb.compare`, `wb.sweep`), so a number seen in a shell is the number seen in
Jupyter. The data is either the bundled digits set (real accuracy, digits-shaped models only) or
seeded random tensors shaped from the model's inputs (any model; timing and engine-vs-reference
error, but no accuracy).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np
import pandas as pd

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.evaluate.datasets import digits_test, digits_train
from workbench.evaluate.metrics import latency_table

__all__ = ["DATA_SOURCES", "random_feeds", "calibration_feeds", "bench", "compare", "sweep"]

DATA_SOURCES = ("digits", "random")
RANDOM_ROWS = 64          # random data for compare/sweep: enough rows for stable metrics, quick on a CPU
DIGITS_SHAPE = (1, 8, 8)  # one digits image, as the bundled CNN takes it


def random_feeds(inputs, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One feed dict for `inputs` (engine or graph input specs) at `batch`: symbolic dims (None or a
    name) take `batch`; integer inputs get 0/1 so ids and masks stay valid."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) else batch for d in spec.shape]
        dtype = np.dtype(spec.dtype)
        feeds[spec.name] = (rng.integers(0, 2, shape).astype(dtype) if dtype.kind in "iub"
                            else rng.standard_normal(shape).astype(dtype))
    return feeds


def _digits_input(graph) -> str:
    """The input the digits images go to, refusing a model they do not fit."""
    spec = graph.inputs[0]
    if len(graph.inputs) != 1 or tuple(spec.shape[1:]) != DIGITS_SHAPE:
        raise WorkbenchError(f"{graph.source}: digits data is [N,1,8,8] images, but the model takes "
                             f"{[f'{s.name}: {s.dtype}{list(s.shape)}' for s in graph.inputs]}; use random data")
    return spec.name


def calibration_feeds(graph, source: str) -> list[dict] | None:
    """INT8 calibration batches: 500 digits training images, or a few random batches (enough to run
    an int8 build on any model, not to calibrate it well), or None."""
    if source in (None, "none"):
        return None
    if source == "digits":
        images, _ = digits_train(500)
        name = _digits_input(graph)
        return [{name: images[i:i + 50]} for i in range(0, len(images), 50)]
    return [random_feeds(graph.inputs, 16, seed=i) for i in range(4)]


def _at_batches(config: wb.BuilderConfig, largest: int) -> wb.BuilderConfig:
    """A profile covering every batch from 1 to `largest`, tuned at the largest."""
    return dataclasses.replace(config, batch_size=None, profile=(1, largest, largest))


def bench(graph, config: wb.BuilderConfig, batches: Sequence[int], *, iters: int = 20,
          out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Latency and throughput per batch size on random inputs; `out` also writes them as JSON
    (the run's settings and one row per batch), for scripts that track numbers over time."""
    engine = wb.build(graph, _at_batches(config, max(batches)))
    table = latency_table(engine, lambda b: random_feeds(engine.inputs, b), list(batches), warmup=2, iters=iters)
    print(repr(engine))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if out is not None:
        record = {"model": graph.source, "backend": engine.network.backend,
                  "device": engine.meta.get("device"), "precision": _name(config.precision),
                  "builder_level": config.builder_level, "iters": iters, "rows": table.to_dict("records")}
        with open(out, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {out}")
    return table


def compare(graph, config: wb.BuilderConfig, *, against: str = "fp32", data: str = "digits",
            model_path: str | None = None) -> pd.DataFrame:
    """`wb.compare` of an engine at `config` against the unfused fp32 CPU engine ("fp32") or
    onnxruntime on the original file ("onnxruntime"): one row per output."""
    if data == "digits":
        name = _digits_input(graph)
        images, labels = digits_test()
        batch = 40                                     # 360 test images: nine equal batches
        batches = [{name: images[i:i + batch]} for i in range(0, len(images), batch)]
    else:
        batch, labels = RANDOM_ROWS // 2, None
        batches = [random_feeds(graph.inputs, batch, seed=i) for i in range(2)]
    engine = wb.build(graph, _at_batches(config, batch))
    reference = model_path if against == "onnxruntime" else wb.load(model_path or graph.source)
    table = wb.compare(engine, reference, batches, labels=labels)
    print(f"{engine!r}\nreference: {'onnxruntime (CPU)' if against == 'onnxruntime' else 'fp32 CPU engine'}, "
          f"{data} data, {sum(len(next(iter(b.values()))) for b in batches)} rows")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return table


def sweep(graph, precisions: Sequence[str], batches: Sequence[int], *, data: str = "digits", iters: int = 10,
          csv: str | os.PathLike | None = None) -> pd.DataFrame:
    """`wb.sweep` (one engine per precision, timed at each batch), on the digits test set or random
    images; random data has no labels, so its accuracy column is NaN rather than a made-up number."""
    if data == "digits":
        name = _digits_input(graph)
        images, labels = digits_test()
    else:
        name = graph.inputs[0].name
        images = random_feeds(graph.inputs[:1], RANDOM_ROWS)[name]
        labels = np.full(len(images), -1)
    calibration = calibration_feeds(graph, data) if "int8" in precisions else None
    table = wb.sweep(graph, precisions, batches, images=images, labels=labels, input_name=name, iters=iters,
                     calibration_data=calibration)
    if data != "digits":
        table["accuracy"] = np.nan
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if csv is not None:
        table.to_csv(csv, index=False)
        print(f"wrote {csv}")
    return table


def _name(precision) -> str:
    return precision if isinstance(precision, str) else ",".join(sorted(precision))
