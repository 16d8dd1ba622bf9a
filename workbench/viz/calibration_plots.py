"""INT8 calibration views: per-tensor |x| histograms with each calibrator's threshold, accuracy per calibrator.

Plots only: statistics come from `workbench.quant` (`TensorStats`), thresholds and accuracies from a
DataFrame the caller builds; a matplotlib Figure comes back, nothing is shown or displayed here.

    fig = plot_histograms(stats, thresholds)        # thresholds: columns tensor, calibrator, amax
    fig = plot_calibrator_accuracy(results)         # results: columns calibrator, accuracy (+ fp32 row)
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.quant.stats import TensorStats

__all__ = ["plot_histograms", "plot_calibrator_accuracy"]

_COLORS = {"minmax": "#d62728", "percentile": "#2ca02c", "entropy": "#1f77b4"}


def plot_histograms(stats: Mapping[str, TensorStats], thresholds: pd.DataFrame, *, cols: int = 3,
                    title: str = "activation |x| histograms and calibration thresholds") -> Figure:
    """One subplot per tensor: the |x| histogram (log counts), one vertical line per calibrator's amax.

    Args:
        stats: tensor name -> TensorStats (e.g. accumulated over the calibration batches).
        thresholds: one row per (tensor, calibrator) with columns tensor, calibrator, amax; tensors
            absent from `stats` are ignored.
        cols: subplots per row.

    Example:
        >>> fig = plot_histograms({"relu_0": s}, pd.DataFrame({"tensor": ["relu_0"], "calibrator": ["minmax"],
        ...                                                     "amax": [s.amax]}))
    """
    names = list(stats)
    if not names:
        raise ValueError("plot_histograms: no tensor statistics to plot")
    cols = max(1, min(cols, len(names)))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows + 0.6))
    by_tensor = dict(tuple(thresholds.groupby("tensor", sort=False)))
    for k, name in enumerate(names):
        s = stats[name]
        ax = fig.add_subplot(rows, cols, k + 1)
        edges = np.arange(s.nbins + 1) * s.bin_width
        ax.stairs(s.hist, edges, fill=True, color="#9aa5b1")
        ax.set_yscale("log")
        for row in by_tensor.get(name, pd.DataFrame(columns=["calibrator", "amax"])).itertuples():
            ax.axvline(row.amax, color=_COLORS.get(row.calibrator, "black"), linestyle="--", linewidth=1.2,
                       label=f"{row.calibrator} {row.amax:.3g}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("|x|")
        ax.set_xlim(0, max(s.amax, 1e-12) * 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_calibrator_accuracy(df: pd.DataFrame, *, fp32: float | None = None, column: str = "accuracy.%",
                             title: str = "INT8 test accuracy per calibrator") -> Figure:
    """Bars of accuracy per calibrator and a horizontal line at the FP32 accuracy.

    Args:
        df: columns calibrator and `column`; a row whose calibrator is "fp32" gives the FP32 line
            (and is not drawn as a bar) unless `fp32` is passed.
        fp32: the FP32 accuracy, in the unit of `column`.

    Example:
        >>> fig = plot_calibrator_accuracy(pd.DataFrame({"calibrator": ["fp32", "entropy"],
        ...                                               "accuracy.%": [97.5, 97.2]}))
    """
    is_fp32 = df["calibrator"] == "fp32"
    if fp32 is None:
        if not is_fp32.any():
            raise ValueError("plot_calibrator_accuracy: pass fp32= or give df a row with calibrator 'fp32'")
        fp32 = float(df.loc[is_fp32, column].iloc[0])
    bars = df.loc[~is_fp32]
    fig = Figure(figsize=(1.4 * len(bars) + 2.5, 3.4))
    ax = fig.add_subplot()
    ax.bar(bars["calibrator"], bars[column], color=[_COLORS.get(c, "#9aa5b1") for c in bars["calibrator"]])
    ax.axhline(fp32, color="black", linestyle="--", label=f"fp32 {fp32:.2f}")
    low = min(float(bars[column].min()), fp32) if len(bars) else fp32
    ax.set_ylim(max(0.0, low - 2.0), max(float(bars[column].max()) if len(bars) else fp32, fp32) + 1.0)
    ax.set_ylabel(column)
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
