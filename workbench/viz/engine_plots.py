"""Plots of one engine or a few builds: a DataFrame in, a matplotlib Figure out, nothing shown.

    fig = plot_layer_times(ctx.profile(feeds))             # per-layer time bars, slowest on top
    fig = plot_op_mix(engine.to_dataframe())               # layers per op, coloured by precision
    fig = plot_builds(summary)                             # one bar per build (columns build, time_ms)
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_layer_times", "plot_op_mix", "plot_builds"]

PRECISION_COLORS = {"fp32": "#4c78a8", "tf32": "#72b7b2", "fp16": "#e8743b", "bf16": "#f2cf5b",
                    "int8": "#54a24b", "mixed": "#b279a2"}


def plot_layer_times(df: pd.DataFrame, time_column: str = "time_ms", top: int = 25,
                     title: str = "time per layer") -> Figure:
    """Horizontal bars of each layer's time (a profile, or a build log's chosen-tactic times),
    the `top` slowest layers, coloured by precision when the frame has that column.

    Example:
        >>> fig = plot_layer_times(engine.create_context().profile({"input": x}))
    """
    rows = df.dropna(subset=[time_column]).sort_values(time_column).tail(top)
    fig = Figure(figsize=(7, 0.28 * len(rows) + 1.3))
    ax = fig.add_subplot()
    colors = [PRECISION_COLORS.get(p, "#9aa5b1") for p in rows["precision"]] if "precision" in rows else "#e8743b"
    ax.barh(range(len(rows)), rows[time_column], color=colors)
    ax.set_yticks(range(len(rows)), [f"{l} ({o})" for l, o in zip(rows["layer"], rows.get("op", rows["layer"]))],
                  fontsize=8)
    ax.set_xlabel("ms")
    total = float(df[time_column].sum())
    ax.set_title(f"{title} (total {total:.3f} ms)")
    fig.tight_layout()
    return fig


def plot_op_mix(df: pd.DataFrame, title: str = "layers per op") -> Figure:
    """Stacked bars: how many layers of each op the engine runs, split by precision
    (from `Engine.to_dataframe()`, columns op and precision)."""
    counts = df.groupby(["op", "precision"]).size().unstack(fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values().index]
    fig = Figure(figsize=(7, 0.3 * len(counts) + 1.3))
    ax = fig.add_subplot()
    left = pd.Series(0, index=counts.index)
    for precision in counts.columns:
        ax.barh(range(len(counts)), counts[precision], left=left, label=precision,
                color=PRECISION_COLORS.get(precision, "#9aa5b1"))
        left = left + counts[precision]
    ax.set_yticks(range(len(counts)), counts.index, fontsize=8)
    ax.set_xlabel("layers")
    ax.set_title(title)
    ax.legend(title="precision", loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_builds(df: pd.DataFrame, value: str = "time_ms", title: str = "builds compared") -> Figure:
    """One bar per build (column `build`), e.g. the summed layer time of each engine in a history."""
    fig = Figure(figsize=(max(5.0, 0.9 * len(df) + 2), 3.6))
    ax = fig.add_subplot()
    colors = [PRECISION_COLORS.get(p, "#9aa5b1") for p in df["precision"]] if "precision" in df else "#4c78a8"
    ax.bar(range(len(df)), df[value], color=colors)
    ax.set_xticks(range(len(df)), df["build"], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(value.replace("_", " "))
    ax.set_title(title)
    fig.tight_layout()
    return fig
