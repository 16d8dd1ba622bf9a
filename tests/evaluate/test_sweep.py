"""sweep() on the bundled digits CNN against an independently built engine, and its two plots."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import workbench as wb
from workbench.quant.errors import CalibrationError
from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
from workbench.evaluate.metrics import accuracy, predict
from workbench.evaluate.sweep import COLUMNS, sweep
from workbench.viz.sweep_plots import pareto_front, plot_pareto, plot_sweep


@pytest.fixture(scope="module")
def digits():
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    images, labels = digits_test(limit=120)
    return graph, images, labels


@pytest.fixture(scope="module")
def table(digits):
    graph, images, labels = digits
    calls = []
    df = sweep(graph, ("fp32", "fp16"), (1, 8), images=images, labels=labels, iters=3,
               progress=lambda done, total: calls.append((done, total)))
    return df, calls


def test_one_row_per_precision_and_batch(table):
    df, calls = table
    assert list(df.columns) == COLUMNS
    assert len(df) == 4
    assert set(zip(df["precision"], df["batch"])) == {("fp32", 1), ("fp32", 8), ("fp16", 1), ("fp16", 8)}
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (df["build_s"] > 0).all() and (df["latency.p90_ms"] >= df["latency.median_ms"]).all()


def test_accuracy_matches_an_independently_built_engine(digits, table):
    graph, images, labels = digits
    df, _ = table
    for precision in ("fp32", "fp16"):
        engine = wb.build(graph, wb.BuilderConfig(precision=precision, batch_size=1))
        expected = accuracy(np.concatenate([predict(engine, images[i:i + 1], 1) for i in range(len(images))]), labels)
        assert df.loc[df["precision"] == precision, "accuracy"].tolist() == pytest.approx([expected] * 2, abs=1e-9)
    assert df["accuracy"].min() > 0.9


def test_throughput_is_batch_over_median(table):
    df, _ = table
    np.testing.assert_allclose(df["throughput.per_s"], df["batch"] * 1000 / df["latency.median_ms"])


def test_int8_without_calibration_raises_the_builders_error(digits):
    graph, images, labels = digits
    with pytest.raises(CalibrationError, match="calibration"):
        sweep(graph, ("int8",), (1,), images=images, labels=labels, iters=1)


def test_int8_with_calibration(digits):
    graph, images, labels = digits
    train, _ = digits_train(limit=100)
    df = sweep(graph, ("int8",), (2,), images=images, labels=labels, iters=1,
               calibration_data=({"input": train[i:i + 50]} for i in range(0, 100, 50)))
    assert len(df) == 1 and df["accuracy"][0] > 0.85


def test_plot_sweep_draws_one_line_per_precision_on_two_axes(table):
    fig = plot_sweep(table[0])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]
    assert all(len(line.get_xdata()) == 2 for ax in fig.axes for line in ax.lines)


def test_plot_pareto_one_point_per_precision_and_a_front(table):
    df, _ = table
    fig = plot_pareto(df)
    (ax,) = fig.axes
    points = [line for line in ax.lines if line.get_label() in ("fp32", "fp16")]
    assert len(points) == 2 and len(ax.lines) == 3           # two points + the front
    front_x = ax.lines[-1].get_xdata()
    assert list(front_x) == sorted(front_x)
    assert len(plot_pareto(df, batch=1).axes[0].lines) == 3
    with pytest.raises(ValueError, match="batch 5"):
        plot_pareto(df, batch=5)


def test_pareto_front_drops_dominated_rows():
    df = pd.DataFrame({"precision": ["a", "b", "c", "d"], "latency.median_ms": [1.0, 2.0, 3.0, 2.5],
                       "accuracy": [0.90, 0.95, 0.96, 0.94]})
    assert pareto_front(df)["precision"].tolist() == ["a", "b", "c"]
