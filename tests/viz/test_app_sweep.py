"""The app's Sweep tab end to end (button -> background job -> CSV read back with pandas), and the
job machinery behind every long action: progress, Cancel, errors shown in the app."""
from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ipywidgets")

import workbench as wb  # noqa: E402
from workbench.evaluate.sweep import COLUMNS  # noqa: E402
from workbench.viz.app.jobs import JobPanel  # noqa: E402


def test_sweep_button_runs_the_grid_and_the_csv_reads_back(tmp_path):
    app = wb.Workbench("digits")
    assert app.export_csv(tmp_path / "early.csv") is None             # nothing to export yet: said so
    assert "run a sweep first" in app.sweep_tab.export_status.value
    tab = app.sweep_tab
    for name, box in tab.precisions.items():
        box.value = name in ("fp32", "fp16")
    tab.batches.value, tab.iters.value = "4, 1", 1
    tab.run_button.click()
    assert app.wait(timeout=180) and tab.job.outcome == "done", tab.job.status.value
    df = app.sweep_results
    assert list(df.columns) == COLUMNS and len(df) == 4
    assert set(zip(df["precision"], df["batch"])) == {(p, b) for p in ("fp32", "fp16") for b in (1, 4)}

    tab.csv_path.value = str(tmp_path / "out" / "sweep.csv")
    tab.export_button.click()
    written = pd.read_csv(tmp_path / "out" / "sweep.csv")
    assert str(tmp_path / "out" / "sweep.csv") in tab.export_status.value
    pd.testing.assert_frame_equal(written, df.reset_index(drop=True), check_dtype=False)

    app.show_tab("Sweep")
    assert "image/png" in tab.heatmaps.outputs[0]["data"] and "image/png" in tab.pareto.outputs[0]["data"]


def test_sweep_settings_that_cannot_run_are_shown_next_to_their_control():
    app = wb.Workbench("digits")
    app.sweep_tab.batches.value = "1, x"
    assert not app.sweep_tab.execute(background=False)
    assert "integers" in app.sweep_tab.batch_error.value
    assert app.sweep(precisions=[], batch_sizes=[1]) is None
    assert "choose at least one" in app.sweep_tab.precision_error.value


def _counting_work(steps: int, delay: float):
    def work(job: JobPanel) -> int:
        for i in range(steps):
            job.report(i, steps, f"step {i}")
            time.sleep(delay)
        return steps
    return work


def test_cancel_stops_a_background_job_and_frees_the_lock():
    lock = threading.Lock()
    panel = JobPanel("demo", lock)
    finished = []
    assert panel.run(_counting_work(2000, 0.005), finished.append, finished.append, background=True)
    deadline = time.monotonic() + 30
    while panel.progress.value < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not panel.run(_counting_work(1, 0), finished.append, finished.append, background=True)  # one at a time
    assert "another build or sweep is running" in panel.status.value
    panel.cancel_button.click()
    assert panel.wait(timeout=30)
    assert panel.outcome == "cancelled" and "cancelled" in panel.status.value
    assert finished == [] and panel.progress.value < 2000 and panel.cancel_button.disabled
    assert lock.acquire(blocking=False)
    lock.release()


def test_a_failing_job_shows_its_error_in_the_app():
    panel = JobPanel("demo", threading.Lock())
    seen = []

    def work(job):
        job.report(1, 3, "layer conv1")
        raise ValueError("layer 'conv1' has no weights")
    assert panel.run(work, seen.append, seen.append, background=False)
    assert panel.outcome == "failed" and isinstance(seen[0], ValueError)
    assert "ValueError: layer &#x27;conv1&#x27; has no weights" in panel.status.value
    assert panel.progress.bar_style == "danger"


def test_a_model_without_labels_sweeps_against_fp32_agreement():
    """Synthetic feeds (no labels): accuracy is top-1 agreement with the FP32 reference, so fp32 is 1."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((6, 16)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], "tiny_fc",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], [weight])
    app = wb.Workbench(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert app.data is not None and not app.data.labelled
    df = app.sweep(["fp32", "bf16"], [2], iters=1)
    assert df is not None, app.last_error
    assert df.loc[df["precision"] == "fp32", "accuracy"].item() == 1.0
    app.show_tab("Sweep")
    assert "agreement with the FP32 reference" in app.sweep_tab.note.value
