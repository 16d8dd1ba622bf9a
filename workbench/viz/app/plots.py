"""The app's plots, TREx style: a DataFrame in, a matplotlib Figure out, nothing shown here.

    fig = plot_latency_vs_batch(app.history.latency())
    fig = plot_layer_times(app.history[-1].profile)
    fig = plot_roofline(app.history[-1].profile, device_limits("cpu"))
    fig = plot_sweep_heatmaps(app.sweep_results)
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.viz.sweep_plots import plot_sweep

from workbench.viz.svg import op_class
from workbench.viz.svg_draw import COLOURS

__all__ = ["plot_latency_vs_batch", "plot_layer_times", "plot_roofline", "roofline_points", "device_limits",
           "plot_sweep_heatmaps", "plot_build_accuracy", "CPU_GHZ", "CPU_FLOPS_PER_CYCLE", "CPU_BYTES_PER_S"]

# The CPU roof is an estimate, deliberately modest: 2.5 GHz x 16 float32 FLOP per cycle per core
# (one 8-wide AVX2 FMA unit) x the cores numpy may use, and 20 GB/s of DRAM bandwidth (dual-channel
# DDR4 as a laptop or a small cloud VM gets). Real peaks vary by 2-4x; the plot says "estimate".
CPU_GHZ = 2.5
CPU_FLOPS_PER_CYCLE = 16
CPU_BYTES_PER_S = 20e9


def device_limits(backend: str = "cpu") -> dict:
    """Peak FLOP/s and memory bandwidth to draw the roofline against, and where they come from."""
    if backend == "cuda":
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            sms, clock_hz = props["multiProcessorCount"], props["clockRate"] * 1e3
            bandwidth = 2 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            return {"name": name, "peak_flops": sms * 128 * 2 * clock_hz, "peak_bytes_per_s": bandwidth,
                    "estimate": True, "source": f"{sms} SMs x 128 FP32 lanes x 2 x {clock_hz / 1e9:.2f} GHz "
                                                "(FP32 CUDA cores, no tensor cores); DRAM clock x bus width"}
        except Exception as exc:           # no CuPy or no device: fall back to the CPU's roof, say so
            return {**device_limits("cpu"), "source": f"CUDA properties unavailable ({exc}); CPU estimate"}
    cores = os.cpu_count() or 1
    return {"name": f"CPU ({cores} cores)", "peak_flops": cores * CPU_GHZ * 1e9 * CPU_FLOPS_PER_CYCLE,
            "peak_bytes_per_s": CPU_BYTES_PER_S, "estimate": True,
            "source": f"estimate: {cores} cores x {CPU_GHZ} GHz x {CPU_FLOPS_PER_CYCLE} FLOP/cycle, "
                      f"{CPU_BYTES_PER_S / 1e9:.0f} GB/s"}


def plot_latency_vs_batch(df: pd.DataFrame, title: str = "latency and throughput per build") -> Figure:
    """Median latency (left) and throughput (right) against batch, one line per build
    (`BuildHistory.latency()`: columns build, batch, latency.median_ms, throughput.per_s)."""
    return plot_sweep(df, title, by="build")


def plot_layer_times(df: pd.DataFrame, top: int = 25, title: str = "time per layer") -> Figure:
    """Horizontal bars of each layer's time (a profile: layer, op, time_ms), slowest on top, coloured
    by op class like the graph view; the share of the total is written on each bar."""
    df = df.sort_values("time_ms").tail(top)
    total = df["time_ms"].sum()
    fig = Figure(figsize=(8, 0.3 * len(df) + 1.4))
    ax = fig.add_subplot()
    ops = [str(o).split("::")[-1] for o in df["op"]]
    domains = ["workbench" if "::" in str(o) else "" for o in df["op"]]
    colours = [COLOURS[op_class(o, d)][1] for o, d in zip(ops, domains)]
    rows = np.arange(len(df))
    ax.barh(rows, df["time_ms"], color=colours)
    ax.set_yticks(rows, [f"{l} ({o})" for l, o in zip(df["layer"], ops)], fontsize=8)
    share = df["percent"] if "percent" in df else 100 * df["time_ms"] / (total or 1)
    for row, ms, pct in zip(rows, df["time_ms"], share):
        ax.text(ms, row, f" {pct:.1f}%", va="center", fontsize=7)
    ax.set_xlabel("time (ms)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def roofline_points(df: pd.DataFrame) -> pd.DataFrame:
    """Layers with work and time, plus their operational intensity (FLOP per byte) and achieved FLOP/s."""
    df = df[(df["flops"] > 0) & (df["bytes"] > 0) & (df["time_ms"] > 0)]
    return df.assign(intensity=df["flops"] / df["bytes"],
                     achieved_flops=df["flops"] / (df["time_ms"] * 1e-3)).reset_index(drop=True)


def plot_roofline(df: pd.DataFrame, limits: dict, label_top: int = 6, title: str | None = None) -> Figure:
    """Each layer's achieved FLOP/s against its operational intensity, under the device's roofs
    min(peak FLOP/s, intensity x bandwidth). `df` is a profile (flops, bytes, time_ms, layer)."""
    points = roofline_points(df)
    fig = Figure(figsize=(7, 4.4))
    ax = fig.add_subplot()
    peak, bandwidth = limits["peak_flops"], limits["peak_bytes_per_s"]
    low = min([0.05] + list(points["intensity"] / 2))
    high = max([4 * peak / bandwidth] + list(points["intensity"] * 2))
    x = np.geomspace(low, high, 200)
    ax.plot(x, np.minimum(peak, x * bandwidth), color="black", linewidth=1.5,
            label=f"roof{' (estimate)' if limits.get('estimate') else ''}: {peak / 1e9:.0f} GFLOP/s, "
                  f"{bandwidth / 1e9:.0f} GB/s")
    ax.axvline(peak / bandwidth, color="gray", linestyle=":", linewidth=1)
    if len(points):
        ax.scatter(points["intensity"], points["achieved_flops"], s=30, color="tab:orange", zorder=3,
                   label="layers")
        slowest = points.nlargest(label_top, "time_ms")          # a handful of labels only
        for name, x_at, y_at in zip(slowest["layer"], slowest["intensity"], slowest["achieved_flops"]):
            ax.annotate(name, (x_at, y_at), fontsize=7, textcoords="offset points", xytext=(4, 3))
    else:
        ax.text(0.5, 0.5, "no layer has FLOPs, bytes and time", transform=ax.transAxes, ha="center")
    ax.set(xscale="log", yscale="log", xlabel="operational intensity (FLOP / byte)", ylabel="achieved FLOP/s",
           title=title or f"roofline: {limits.get('name', '')}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_sweep_heatmaps(df: pd.DataFrame, title: str = "precision x batch") -> Figure:
    """Heatmaps of median latency and throughput, precisions down, batch sizes across (`wb.sweep` rows)."""
    fig = Figure(figsize=(10, 0.45 * df["precision"].nunique() + 2.2))
    axes = fig.subplots(1, 2)
    order = list(dict.fromkeys(df["precision"]))
    for ax, column, label, cmap in ((axes[0], "latency.median_ms", "median latency (ms)", "viridis_r"),
                                    (axes[1], "throughput.per_s", "items / s", "viridis")):
        grid = df.pivot_table(index="precision", columns="batch", values=column).reindex(order)
        image = ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [str(b) for b in grid.columns])
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set(xlabel="batch", title=label)
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark_cell = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5       # readable on yellow and on purple
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=8,
                    color="white" if dark_cell else "black")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_build_accuracy(df: pd.DataFrame, title: str = "each build vs the FP32 reference") -> Figure:
    """Accuracy (when labelled; top-1 agreement otherwise) and relative L2 error per build
    (`BuildHistory.summary()` rows)."""
    fig = Figure(figsize=(10, 3.4))
    left, right = fig.subplots(1, 2)
    rows = np.arange(len(df))
    labelled = "accuracy" in df and df["accuracy"].notna().any()
    score = df["accuracy"] if labelled else df["top1_agreement"]
    left.bar(rows, 100 * score.astype(float), color="tab:blue")
    left.set_xticks(rows, df["build"], rotation=30, ha="right", fontsize=8)
    left.set(ylabel="top-1 accuracy (%)" if labelled else "top-1 agreement with FP32 (%)",
             title="accuracy" if labelled else "agreement (no labels)")
    finite = score.astype(float).dropna()
    if len(finite):
        left.set_ylim(max(0.0, 100 * finite.min() - 5), 100.5)
    right.bar(rows, np.maximum(df["rel_l2"].astype(float), 1e-12), color="tab:red")
    right.set_xticks(rows, df["build"], rotation=30, ha="right", fontsize=8)
    right.set(yscale="log", ylabel="relative L2 error", title="output error vs FP32")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
