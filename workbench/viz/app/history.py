"""`BuildHistory`: every build the app made, with what was measured on it, so builds can be compared.

A `BuildRecord` is data only: the settings, the engine, the graph it was built from and the tidy
DataFrames measured right after the build (latency per batch, per-layer profile, comparison with
the FP32 reference). The tabs read these; nothing here draws or measures.

Example:
    >>> app.history.summary()[["build", "precision", "latency.median_ms", "accuracy"]]
    >>> app.history.latency()          # one row per (build, batch): what the Performance tab plots
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator

import pandas as pd

from workbench.ir import Graph
from workbench.runtime import Engine

__all__ = ["BuildRecord", "BuildHistory", "layer_table", "LAYER_COLUMNS"]

LAYER_COLUMNS = ["layer", "op", "source_nodes", "precision", "tactic.name", "time_ms", "share.percent"]


@dataclasses.dataclass
class BuildRecord:
    """One build: its settings, its engine and what was measured on it."""
    index: int
    model: str
    settings: dict[str, Any]                 # precision, batch/profile, backend, builder level, ...
    engine: Engine
    graph: Graph                             # the (optimized, maybe pruned) graph that was built
    build_seconds: float
    latency: pd.DataFrame                    # batch, latency.median_ms, latency.p90_ms, throughput.per_s
    profile: pd.DataFrame | None = None      # ExecutionContext.profile: one row per layer
    comparison: pd.DataFrame | None = None   # wb.compare against the FP32 reference: one row per output
    notes: list[str] = dataclasses.field(default_factory=list)   # what could not be measured, and why
    created: float = dataclasses.field(default_factory=time.time)

    @property
    def label(self) -> str:
        s = self.settings
        if s.get("batch_size"):
            batch = f"b{s['batch_size']}"
        elif s.get("profile"):
            batch = "b{}-{}-{}".format(*s["profile"])
        else:
            batch = "model batch"
        precision = s.get("precision", "?")
        if precision == "mixed":
            precision = f"mixed({'+'.join(s.get('allowed') or ())})"
        sparsity = s.get("sparsity")
        extra = f" 2:4 {sparsity}" if sparsity not in (None, False, "disable") else ""
        return f"#{self.index} {precision} {batch}{extra}"

    @property
    def accuracy(self) -> float | None:
        if self.comparison is None or "accuracy" not in self.comparison:
            return None
        return float(self.comparison["accuracy"].iloc[0])

    @property
    def build_log(self) -> pd.DataFrame | None:
        return getattr(self.engine, "build_log", None)

    def layers(self) -> pd.DataFrame:
        return layer_table(self.engine, self.profile)


def layer_table(engine: Engine, profile: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per engine layer: op, fused originals, precision, tactic, time and share of the total.
    Times are NaN when no per-layer profile was measured."""
    df = engine.to_dataframe()[["layer", "op", "source_nodes", "precision", "tactic.name"]]
    if profile is not None and len(profile) and "time_ms" in profile:
        times = profile.groupby("layer", sort=False)["time_ms"].sum()
        df = df.assign(time_ms=df["layer"].map(times).astype(float))
    else:
        df = df.assign(time_ms=float("nan"))
    total = df["time_ms"].sum(min_count=1)
    share = 100.0 * df["time_ms"] / total if total and total > 0 else float("nan")
    return df.assign(**{"share.percent": share})[LAYER_COLUMNS]


class BuildHistory:
    """The builds of one app session, oldest first."""

    def __init__(self) -> None:
        self.records: list[BuildRecord] = []

    def add(self, record: BuildRecord) -> BuildRecord:
        self.records.append(record)
        return record

    def next_index(self) -> int:
        return len(self.records) + 1

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[BuildRecord]:
        return iter(self.records)

    def __getitem__(self, key: int | str) -> BuildRecord:
        """By position (`history[-1]`) or by label (`history["#2 fp16 b8"]`)."""
        if isinstance(key, str):
            for record in self.records:
                if record.label == key:
                    return record
            raise KeyError(f"no build labelled {key!r}; builds: {[r.label for r in self.records]}")
        return self.records[key]

    @property
    def latest(self) -> BuildRecord | None:
        return self.records[-1] if self.records else None

    def summary(self) -> pd.DataFrame:
        """One row per build: settings, build time, latency at the largest measured batch, accuracy."""
        rows = []
        for r in self.records:
            largest = r.latency.iloc[-1] if len(r.latency) else {}
            comparison = r.comparison.iloc[0] if r.comparison is not None and len(r.comparison) else {}
            rows.append({"build": r.label, "model": r.model, "precision": r.settings.get("precision"),
                         "backend": r.settings.get("backend"), "builder_level": r.settings.get("builder_level"),
                         "layers": len(r.engine.layers), "build_s": r.build_seconds,
                         "batch": largest.get("batch"), "latency.median_ms": largest.get("latency.median_ms"),
                         "throughput.per_s": largest.get("throughput.per_s"),
                         "rel_l2": comparison.get("rel_l2"), "top1_agreement": comparison.get("top1_agreement"),
                         "accuracy": r.accuracy})
        return pd.DataFrame(rows, columns=["build", "model", "precision", "backend", "builder_level", "layers",
                                           "build_s", "batch", "latency.median_ms", "throughput.per_s", "rel_l2",
                                           "top1_agreement", "accuracy"])

    def latency(self) -> pd.DataFrame:
        """Every build's latency table, stacked, with a `build` column."""
        frames = [r.latency.assign(build=r.label) for r in self.records if len(r.latency)]
        if not frames:
            return pd.DataFrame(columns=["build", "batch", "latency.median_ms", "throughput.per_s"])
        return pd.concat(frames, ignore_index=True)

    def comparisons(self) -> pd.DataFrame:
        """Every build's comparison with the FP32 reference, stacked, with a `build` column."""
        frames = [r.comparison.assign(build=r.label) for r in self.records if r.comparison is not None]
        if not frames:
            return pd.DataFrame(columns=["build", "output", "rel_l2", "accuracy"])
        df = pd.concat(frames, ignore_index=True)
        return df[["build"] + [c for c in df.columns if c != "build"]]
