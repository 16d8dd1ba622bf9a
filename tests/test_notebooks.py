"""Notebooks execute top to bottom in a real Jupyter kernel (nbclient), and show what they claim."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def execute(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # coalesce_streams: the kernel flushes stdout on a timer, so one print can arrive as two stream
    # outputs (seen in CI under load); a front end shows them as one text, and so do we
    NotebookClient(notebook, timeout=300, kernel_name="python3", coalesce_streams=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


def outputs_of(notebook) -> tuple[str, int]:
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output["text"])
            data = output.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


@pytest.mark.slow
def test_quickstart_notebook_runs_and_reports_accuracy():
    notebook = execute("01_quickstart.ipynb")
    text, images = outputs_of(notebook)
    accuracy = float(re.search(r"FP32 test accuracy: ([\d.]+)%", text).group(1))
    assert accuracy >= 97.0
    assert "reloaded outputs identical: True" in text
    assert images >= 2                                  # the prediction grid and the latency plot
    assert "latency.median_ms" in text
    app_accuracy = float(re.search(r"app build: 8 layers, accuracy ([\d.]+)%", text).group(1))
    assert app_accuracy == accuracy                     # the app's build scores what the engine above scored
    assert "<Workbench 'digits_cnn': 1 build(s)" in text


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            assert not cell.get("outputs") and not cell.get("execution_count"), f"{path.name} has outputs"


@pytest.mark.slow
def test_explore_fusions_notebook_reproduces_the_figure():
    notebook = execute("02_explore_fusions.ipynb")
    text, images = outputs_of(notebook)
    svgs = sum("image/svg+xml" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))
    assert svgs >= 5                                     # original + three steps + focus view
    errors = [float(e) for e in re.findall(r"relative L2 error ([\d.e+-]+)", text)]
    assert errors and max(errors) <= 1e-5
    assert "fuse_conv_act" in text and "merge_parallel_convs" in text
    assert images >= 1                                   # the op-count plot
    counts = [int(n) for n in re.findall(r"^app, .*: (\d+) nodes$", text, re.M)]
    assert len(counts) == 4 and counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert re.search(r"^inception_3a/1x1\S* <- \[.*'inception_3a/relu_1x1'", text, re.M)


@pytest.mark.slow
def test_precision_sweep_notebook_shows_every_precision_and_both_plots():
    notebook = execute("03_precision_sweep.ipynb")
    text, images = outputs_of(notebook)
    for precision in ("fp32", "tf32", "fp16", "bf16", "int8"):
        assert precision in text
    assert "throughput.per_s" in text and "accuracy" in text
    assert images >= 2                                   # plot_sweep and plot_pareto
    assert "exported 15 rows to digits_sweep.csv" in text    # the app's CSV export: 5 precisions x 3 batches


@pytest.mark.slow
def test_int8_calibration_notebook_compares_calibrators_and_reuses_the_cache():
    notebook = execute("04_int8_calibration.ipynb")
    text, images = outputs_of(notebook)
    accuracy = {name: float(value) for name, value in
                re.findall(r"^\s*(fp32|entropy|minmax|percentile)\s+([\d.]+)\s+[-\d.]+\s*$", text, re.M)}
    assert set(accuracy) == {"fp32", "entropy", "minmax", "percentile"}
    assert abs(accuracy["entropy"] - accuracy["fp32"]) <= 0.5
    assert "calibration cache hit" in text
    assert images >= 2                                   # the histograms and the accuracy bars


@pytest.mark.slow
def test_autotuner_notebook_shows_the_log_a_warm_cache_levels_profile_and_memory():
    notebook = execute("05_autotuner_and_timing_cache.ipynb")
    text, images = outputs_of(notebook)
    assert "cold build" in text and "timing cache: 0 hits" in text
    for column in ("candidates", "times_ms", "choice", "reason", "cached"):
        assert column in text                            # engine.build_log is shown
    assert re.search(r"all tuned layers cached: True \(\d+ layers\)", text)
    cold, warm = (float(x) for x in re.search(r"cold build ([\d.]+) s -> warm build ([\d.]+) s", text).groups())
    assert warm < cold
    assert re.search(r"mlp: first build \d+ misses; rebuild \d+ hits, 0 misses", text)
    assert "builder_level" in text and "time_ms" in text and "gbps" in text
    assert "arena_bytes" in text and "activation arena" in text
    assert images >= 2                                   # layer times and roofline
    assert "<Workbench 'digits_cnn': 1 build(s)" in text
