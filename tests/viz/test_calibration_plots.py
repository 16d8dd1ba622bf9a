"""Calibration plots: a Figure back, one axes per tensor, one line per threshold, one bar per calibrator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from workbench.quant.calibrate import EntropyCalibrator, MinMaxCalibrator, PercentileCalibrator
from workbench.quant.stats import TensorStats
from workbench.viz.calibration_plots import plot_calibrator_accuracy, plot_histograms

CALIBRATORS = [MinMaxCalibrator(), PercentileCalibrator(), EntropyCalibrator()]


@pytest.fixture
def stats():
    rng = np.random.default_rng(0)
    out = {}
    for name, scale in [("a", 1.0), ("b", 3.0)]:
        s = TensorStats(name)
        for _ in range(3):
            s.update(rng.standard_normal(2000) * scale)
        out[name] = s
    return out


def test_histograms_one_axes_per_tensor_one_line_per_calibrator(stats):
    thresholds = pd.DataFrame([{"tensor": n, "calibrator": c.name, "amax": c.amax(s)}
                               for n, s in stats.items() for c in CALIBRATORS])
    fig = plot_histograms(stats, thresholds)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    for ax, name in zip(fig.axes, stats):
        assert ax.get_title() == name and ax.get_yscale() == "log"
        xs = sorted(line.get_xdata()[0] for line in ax.lines)
        assert len(ax.lines) == 3
        assert xs == pytest.approx(sorted(thresholds.loc[thresholds.tensor == name, "amax"]))


def test_histograms_tensor_without_thresholds_has_no_lines(stats):
    thresholds = pd.DataFrame({"tensor": ["a"], "calibrator": ["minmax"], "amax": [stats["a"].amax]})
    fig = plot_histograms(stats, thresholds, cols=1)
    assert [len(ax.lines) for ax in fig.axes] == [1, 0]


def test_accuracy_bars_and_fp32_line():
    df = pd.DataFrame({"calibrator": ["fp32", "entropy", "minmax", "percentile"],
                       "accuracy.%": [97.5, 97.2, 96.9, 97.5]})
    fig = plot_calibrator_accuracy(df)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    assert [p.get_height() for p in ax.patches] == [97.2, 96.9, 97.5]
    (line,) = ax.lines
    assert line.get_ydata()[0] == 97.5
    assert [t.get_text() for t in ax.get_xticklabels()] == ["entropy", "minmax", "percentile"]


def test_accuracy_needs_fp32():
    with pytest.raises(ValueError, match="fp32"):
        plot_calibrator_accuracy(pd.DataFrame({"calibrator": ["entropy"], "accuracy.%": [97.0]}))
    fig = plot_calibrator_accuracy(pd.DataFrame({"calibrator": ["entropy"], "accuracy.%": [97.0]}), fp32=97.5)
    assert fig.axes[0].lines[0].get_ydata()[0] == 97.5
