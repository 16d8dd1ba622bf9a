"""Sensitivity and AMP views: the metric change per layer when it alone runs in a low precision.

    fig = plot_sensitivity(wb_sensitivity_df)        # columns layer, delta (+ precision)
    fig = plot_sensitivity(df, kept=engine.amp_report()["layer"])   # AMP's kept layers highlighted
"""
from __future__ import annotations

from typing import Iterable

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["plot_sensitivity"]

_HARM, _SAFE, _KEPT = "#d62728", "#9aa5b1", "#1f77b4"


def plot_sensitivity(df: pd.DataFrame, *, kept: Iterable[str] = (), title: str | None = None) -> Figure:
    """Horizontal bars of `delta` per layer, most harmful at the top; layers in `kept` (e.g. those
    automatic mixed precision kept at a higher precision) in blue, other harmful ones in red."""
    if df.empty:
        raise ValueError("plot_sensitivity: the sensitivity table is empty")
    kept = set(kept)
    rows = df.sort_values("delta", kind="stable").iloc[::-1]       # barh draws bottom-up
    colors = [_KEPT if r.layer in kept else (_HARM if r.delta < 0 else _SAFE) for r in rows.itertuples()]
    fig = Figure(figsize=(7, 0.35 * len(rows) + 1.4))
    ax = fig.add_subplot()
    ax.barh(rows["layer"], rows["delta"], color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("metric change vs FP32 (this layer alone in low precision)")
    precision = df["precision"].iloc[0] if "precision" in df else "low precision"
    reference = df.attrs.get("reference")
    ax.set_title(title or f"{precision} sensitivity per layer" + (f" (FP32 {reference:.2f})" if reference else ""))
    fig.tight_layout()
    return fig
