"""wb.Workbench driven like a user would, in a plain Python process (ipywidgets needs no frontend):
buttons are clicked, and the outcomes are checked against independent computations (the engine's
own layers, predict/accuracy on the digits test split, wb.optimize run directly)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("ipywidgets")

import workbench as wb  # noqa: E402
from workbench.evaluate.datasets import digits_model_path, digits_test  # noqa: E402
from workbench.evaluate.metrics import accuracy, predict  # noqa: E402
from workbench.viz.app.common import cuda_available  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def table_rows(html: str) -> list[list[str]]:
    """Cells of every `<tbody>` row of the app's `table.wb-layers` (valid XML by construction)."""
    table = ET.fromstring(re.search(r'<table class="wb-layers">.*?</table>', html, re.S).group(0))
    return [[td.text or "" for td in tr.iter("td")] for tr in table.find("tbody").iter("tr")]


def highlighted(app) -> set[str]:
    svg = re.search(r"<svg.*</svg>", app.graph_tab.svg.value, re.S).group(0)
    return {g.get("data-name") for g in ET.fromstring(svg).iter(f"{SVG}g") if "wb-highlight" in (g.get("class") or "")}


@pytest.fixture(scope="module")
def app():
    """The digits model, one fp32 batch-8 build started with the Build button (a background job)."""
    app = wb.Workbench(digits_model_path())
    controls = app.build_tab.controls
    controls.precision.value, controls.batch_mode.value, controls.batch.value = "fp32", "fixed batch", 8
    app.build_tab.build_button.click()
    assert app.wait(timeout=180), "the build did not finish"
    assert app.build_tab.job.outcome == "done", app.build_tab.job.status.value
    return app


def test_build_button_records_the_build_and_the_layers_table_has_one_row_per_layer(app):
    record = app.history[0]
    engine = record.engine
    assert record.label == "#1 fp32 b8" and record.settings["batch_size"] == 8
    rows = table_rows(app.layers_tab.table.value)
    assert [r[0] for r in rows] == [layer.name for layer in engine.layers]
    assert [r[4] for r in rows] == [layer.tactic for layer in engine.layers]
    assert sum(float(r[6]) for r in rows) == pytest.approx(100.0, abs=0.5)      # shares of the total
    images, labels = digits_test()
    assert record.accuracy == pytest.approx(accuracy(predict(engine, images, 8), labels))
    assert list(record.latency["batch"]) == [8]
    assert "built 8 layers" in app.build_tab.log_view.value             # the live log caught the builder
    assert app.build_tab.job.progress.value == app.build_tab.job.progress.max


def test_choosing_a_layer_highlights_its_source_nodes_in_the_graph(app):
    app.layers_tab.select("conv2+relu2")
    assert highlighted(app) == {"conv2", "relu2", "conv2+relu2"}
    assert 'class="wb-selected"><td>conv2+relu2</td>' in app.layers_tab.table.value
    app.layers_tab.select(None)
    assert highlighted(app) == set()


def test_layers_sort_and_filter(app):
    tab = app.layers_tab
    tab.sort.value, tab.ascending.value = "time", False
    times = list(tab.dataframe()["time_ms"])
    assert times == sorted(times, reverse=True)
    assert [r[0] for r in table_rows(tab.table.value)] == list(tab.dataframe()["layer"])
    tab.filter.value = "conv"
    want = {l.name for l in app.history[0].engine.layers
            if "conv" in (l.name + l.qualified_op + " ".join(l.source_nodes)).lower()}
    assert {r[0] for r in table_rows(tab.table.value)} == want and len(want) == 3
    tab.filter.value, tab.sort.value, tab.ascending.value = "", "execution order", True


def test_int8_without_data_is_shown_next_to_the_precision_control_then_builds_with_data(app):
    before = len(app.history)
    assert app.build(precision="int8", batch_size=8, calibration="none") is None
    errors = {group: w.value for group, w in app.build_tab.controls.errors.items() if w.value}
    assert list(errors) == ["precision"] and "CalibrationError" in errors["precision"]
    assert len(app.history) == before
    engine = app.build(precision="int8", batch_size=8)           # default: the digits train split
    assert engine is not None and not any(w.value for w in app.build_tab.controls.errors.values())
    assert any(layer.op == "QuantizeLinear" or layer.precision == "int8" for layer in engine.layers)
    assert app.history[-1].label == f"#{before + 1} int8 b8"


def test_a_profile_with_min_above_max_is_shown_next_to_the_batch_control(app):
    before = len(app.history)
    assert app.build(profile=(8, 4, 2)) is None
    assert "min &lt;= opt &lt;= max" in app.build_tab.controls.errors["batch"].value
    assert app.build_tab.controls.errors["precision"].value == "" and len(app.history) == before


def test_cancel_during_a_build_stops_it_and_keeps_the_app_usable(app):
    job, before = app.build_tab.job, len(app.history)

    def cancel_at_first_progress(change):           # the builder reports per layer: cancel at the first
        if change["new"] > 0:
            job.cancel()
    job.progress.observe(cancel_at_first_progress, "value")
    try:
        assert app.build(precision="fp32", batch_size=4) is None
    finally:
        job.progress.unobserve(cancel_at_first_progress, "value")
    assert job.outcome == "cancelled" and "cancelled" in job.status.value
    assert len(app.history) == before
    assert app.job_lock.acquire(blocking=False)     # released: the next build can start
    app.job_lock.release()


def test_performance_and_accuracy_tabs_draw_their_plots(app):
    app.show_tab("Performance")
    tab = app.performance_tab
    for output in (tab.latency_plot, tab.layer_plot, tab.roofline_plot):
        assert "image/png" in output.outputs[0]["data"]
    assert "estimate" in tab.layer_note.value
    app.show_tab("Accuracy")
    acc = app.accuracy_tab
    assert "#1 fp32 b8" in acc.table.value and f"{100 * app.history[0].accuracy:.2f}%" in acc.table.value
    assert "image/png" in acc.layer_plot.outputs[0]["data"] and "image/png" in acc.summary_plot.outputs[0]["data"]
    app.show_tab("Graph")


def test_pass_checkbox_reoptimizes_live():
    app = wb.Workbench("digits")
    graph = wb.load(digits_model_path())
    assert len(app.optimized.nodes) == len(wb.optimize(graph)[0].nodes)
    app.graph_tab.checkboxes["fuse_conv_act"].value = False
    without = wb.optimize(graph, disable=["fuse_conv_act"])[0]
    assert len(app.optimized.nodes) == len(without.nodes) != len(wb.optimize(graph)[0].nodes)
    assert not any("FusedConv" in label for label, _ in app.graph_tab.fused.options)
    assert f"<b>{len(without.nodes)}</b> after" in app.graph_tab.counts.value
    app.graph_tab.fused.value = "fc1+relu4"                     # the fused Gemm is still there
    assert "fc1" in app.graph_tab.originals.value and "relu4" in app.graph_tab.originals.value
    assert highlighted(app) == {"fc1", "relu4", "fc1+relu4"}


def test_a_bad_model_path_shows_the_error_and_the_app_loads_a_good_one():
    app = wb.Workbench("not_a_model.onnx")
    assert "not_a_model.onnx" in app.load_error.value and "ModelLoadError" in app.load_error.value
    assert app.graph is None and app.build(batch_size=4) is None
    assert "no model loaded" in app.build_tab.controls.errors["general"].value
    app.model_path.value = str(digits_model_path())
    app.load_button.click()
    assert app.load_error.value == "" and app.graph.name == "digits_cnn"
    engine = app.build(precision="fp32", batch_size=4)
    assert engine is not None and len(table_rows(app.layers_tab.table.value)) == len(engine.layers)


@pytest.mark.skipif(cuda_available(), reason="checks what the app says without a GPU")
def test_without_a_gpu_the_app_says_so():
    app = wb.Workbench("digits")
    assert "no GPU: CPU backend" in app.device.value
    assert "no GPU: CPU backend" in app.build_tab.controls.backend_note.value
    assert list(app.build_tab.controls.backend.options) == ["cpu"]
    assert app.build(backend="cuda") is None
    assert "no GPU" in app.build_tab.controls.errors["backend"].value
    assert "wb-app" in app._dom_classes
