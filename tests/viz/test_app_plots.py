"""The app's building blocks without the widgets: plots (DataFrame in, Figure out) checked against
the numbers they were given, the SVG highlight, the evaluation chunks and the batch points."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.builder import Profile
from workbench.evaluate.datasets import digits_model_path
from workbench.viz.app.data import model_data
from workbench.viz.app.graph_tab import highlight_svg
from workbench.viz.app.history import layer_table
from workbench.viz.app.measure import batch_points
from workbench.viz.app.plots import device_limits, plot_latency_vs_batch, plot_roofline, plot_sweep_heatmaps

PROFILE = pd.DataFrame({"layer": ["conv", "relu", "fc", "view"], "op": ["Conv", "Relu", "Gemm", "Reshape"],
                        "time_ms": [2.0, 0.5, 1.0, 0.01], "percent": [57.0, 14.2, 28.5, 0.3],
                        "flops": [4e9, 1e6, 2e8, 0.0], "bytes": [4e6, 8e6, 1e7, 0.0]})


def test_roofline_places_each_layer_at_its_intensity_and_achieved_rate_under_the_roof():
    limits = {"name": "test device", "peak_flops": 1e12, "peak_bytes_per_s": 1e10, "estimate": True}
    ax = plot_roofline(PROFILE, limits).axes[0]
    points = ax.collections[0].get_offsets()
    measured = PROFILE[PROFILE["flops"] > 0]
    np.testing.assert_allclose(points[:, 0], measured["flops"] / measured["bytes"])
    np.testing.assert_allclose(points[:, 1], measured["flops"] / (measured["time_ms"] * 1e-3))
    roof = ax.lines[0]
    np.testing.assert_allclose(roof.get_ydata(), np.minimum(1e12, roof.get_xdata() * 1e10))
    assert "estimate" in ax.get_legend().get_texts()[0].get_text()


def test_cpu_limits_are_labelled_as_an_estimate():
    limits = device_limits("cpu")
    assert limits["estimate"] and "estimate" in limits["source"] and limits["peak_flops"] > 0


def test_sweep_heatmaps_show_the_pivoted_values():
    df = pd.DataFrame({"precision": ["fp32", "fp32", "fp16", "fp16"], "batch": [1, 8, 1, 8],
                       "latency.median_ms": [1.0, 3.0, 2.0, 5.0], "throughput.per_s": [1e3, 2.6e3, 5e2, 1.6e3]})
    fig = plot_sweep_heatmaps(df)
    latency, throughput = (ax.images[0].get_array() for ax in fig.axes[:2])
    np.testing.assert_array_equal(latency, [[1.0, 3.0], [2.0, 5.0]])           # fp32 row first, as given
    np.testing.assert_array_equal(throughput, [[1e3, 2.6e3], [5e2, 1.6e3]])


def test_latency_plot_has_one_line_per_build():
    df = pd.DataFrame({"build": ["#1", "#1", "#2"], "batch": [1, 8, 8], "latency.median_ms": [1.0, 2.0, 1.5],
                       "throughput.per_s": [1e3, 4e3, 5.3e3]})
    left, right = plot_latency_vs_batch(df).axes[:2]
    assert [list(line.get_xdata()) for line in left.lines] == [[1, 8], [8]]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["#1", "#2"]


def test_layer_table_shares_add_up_and_times_come_from_the_profile():
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    engine = wb.build(graph, wb.BuilderConfig(batch_size=2))
    profile = pd.DataFrame({"layer": [l.name for l in engine.layers], "time_ms": np.arange(1, len(engine.layers) + 1.0)})
    df = layer_table(engine, profile)
    assert list(df["layer"]) == [l.name for l in engine.layers]
    assert df["share.percent"].sum() == pytest.approx(100.0)
    assert df["time_ms"].tolist() == profile["time_ms"].tolist()
    assert layer_table(engine, None)["time_ms"].isna().all()


def test_highlight_marks_exactly_the_named_boxes():
    graph = wb.load(digits_model_path())
    optimized, _ = wb.optimize(graph)
    svg = wb.render_svg(graph, optimized).svg
    marked = highlight_svg(svg, ["conv1", "relu1", "conv1+relu1"])
    names = re.findall(r'<g class="wb-node wb-highlight"[^>]*data-name="([^"]*)"', marked)
    assert sorted(names) == ["conv1", "conv1+relu1", "relu1"]
    assert marked.count('stroke-width="4.5"') == 3
    assert re.sub(r" wb-highlight|stroke=\"#d81b60\" stroke-width=\"4.5\"", "", marked) == \
        re.sub(r'(<g class="wb-node"[^>]*data-name="(?:conv1|relu1|conv1\+relu1)"[^>]*>(?:<title>.*?</title>)?'
               r'<rect [^>]*?)stroke="[^"]*" stroke-width="[^"]*"', r"\1", svg, flags=re.S)
    assert highlight_svg(svg, []) == svg


@pytest.mark.parametrize("batch, min_batch, rows", [(64, 1, 360), (8, 8, 360), (7, 7, 357), (400, 400, 400)])
def test_evaluation_chunks_fit_the_profile(batch, min_batch, rows):
    data = model_data(wb.load(digits_model_path()))
    chunks, labels = data.chunks(batch, min_batch)
    sizes = [len(c["input"]) for c in chunks]
    assert sum(sizes) == rows == len(labels) and all(min_batch <= s <= batch for s in sizes)


def test_batch_points_cover_the_profile():
    assert batch_points(Profile(8, 8, 8)) == [8]
    points = batch_points(Profile(1, 8, 256))
    assert {1, 8, 256} <= set(points) and len(points) <= 7 and points == sorted(points)
