"""Plots of a precision sweep (`workbench.evaluate.sweep.sweep`): DataFrame in, Figure out, nothing shown."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_sweep", "plot_pareto", "pareto_front"]


def plot_sweep(df: pd.DataFrame, title: str = "precision sweep", by: str = "precision") -> Figure:
    """Median latency (left) and throughput (right) against batch size, one line per value of
    `by` (a precision in a sweep, a build in the app's history).

    Example:
        >>> fig = plot_sweep(sweep(graph, images=x, labels=y, calibration_data=data))
    """
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    for label, rows in df.groupby(by, sort=False):
        rows = rows.sort_values("batch")
        left.plot(rows["batch"], rows["latency.median_ms"], "o-", label=label)
        right.plot(rows["batch"], rows["throughput.per_s"], "o-", label=label)
    left.set(xlabel="batch", ylabel="median latency (ms)", xscale="log", title="latency")
    right.set(xlabel="batch", ylabel="items / s", xscale="log", title="throughput")
    if len(df):
        right.legend(title=by, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Rows not dominated in (lower `latency.median_ms`, higher `accuracy`), sorted by latency."""
    ordered = df.sort_values(["latency.median_ms", "accuracy"], ascending=[True, False])
    best = ordered["accuracy"].cummax().shift(fill_value=float("-inf"))
    return ordered[ordered["accuracy"] > best]


def plot_pareto(df: pd.DataFrame, batch: int | None = None, title: str | None = None) -> Figure:
    """Latency against accuracy, one point per precision at `batch` (default: the largest), with the
    Pareto front (fastest at each accuracy) drawn as a step line.

    Example:
        >>> fig = plot_pareto(df, batch=32)
    """
    batch = int(df["batch"].max()) if batch is None else batch
    rows = df[df["batch"] == batch]
    if rows.empty:
        raise ValueError(f"no rows with batch {batch}; batches in the sweep: {sorted(df['batch'].unique())}")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for precision, ms, acc in zip(rows["precision"], rows["latency.median_ms"], 100 * rows["accuracy"]):
        ax.plot(ms, acc, "o", markersize=8, label=precision)     # one labelled point per precision
        ax.annotate(precision, (ms, acc), textcoords="offset points", xytext=(5, 5))
    front = pareto_front(rows)
    ax.step(front["latency.median_ms"], 100 * front["accuracy"], "--", where="post", color="gray",
            label="Pareto front")
    ax.set(xlabel="median latency (ms)", ylabel="top-1 accuracy (%)", title=title or f"latency vs accuracy, batch {batch}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
