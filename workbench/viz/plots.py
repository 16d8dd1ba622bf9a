"""Plots: a DataFrame in, a matplotlib Figure out; nothing is shown or displayed here."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_op_counts"]


def plot_op_counts(df: pd.DataFrame, top: int = 20, title: str = "ops before and after optimization") -> Figure:
    """Horizontal bars of op counts before/after, from `FusionReport.op_counts()` (columns op, before, after).

    Example:
        >>> fig = plot_op_counts(report.op_counts())
    """
    df = df.assign(_most=df[["before", "after"]].max(axis=1)).sort_values("_most").tail(top)
    fig = Figure(figsize=(7, 0.32 * len(df) + 1.2))
    ax = fig.add_subplot()
    rows = range(len(df))
    ax.barh([r + 0.2 for r in rows], df["before"], height=0.4, label=f"before ({int(df['before'].sum())})",
            color="#9aa5b1")
    ax.barh([r - 0.2 for r in rows], df["after"], height=0.4, label=f"after ({int(df['after'].sum())})",
            color="#e8743b")
    ax.set_yticks(list(rows), df["op"])
    ax.set_xlabel("nodes")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
