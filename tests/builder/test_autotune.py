"""The autotuner on the CPU backend: every Conv/GEMM has two tactics, both checked against the
oracle and timed; the timing cache makes a warm rebuild time nothing; level 0 times nothing; a
tactic that disagrees with the oracle is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

import workbench as wb
from workbench.backends.cpu import CpuBackend
from workbench.backends.cpu.tactics import NumpyTactic
from workbench.builder.autotune import autotune
from workbench.builder.timing_cache import TimingCache
from workbench.errors import BuildError
from workbench.evaluate.datasets import digits_model_path, digits_test


@pytest.fixture(scope="module")
def graph():
    return wb.load(digits_model_path())


def test_conv_and_gemm_layers_choose_between_two_timed_tactics(graph):
    engine = wb.build(graph, wb.BuilderConfig(batch_size=16))
    log = engine.build_log
    tuned = log[log["op"].isin(["Conv", "Gemm"])]
    assert len(tuned) == 5
    for row in tuned.itertuples():
        assert row.candidates == ["numpy", "blas.sgemm"]
        assert set(row.times_ms) == {"numpy", "blas.sgemm"} and min(row.times_ms.values()) > 0
        assert row.choice == min(row.times_ms, key=row.times_ms.get)
    assert set(log[~log["op"].isin(["Conv", "Gemm"])]["reason"]) == {"only candidate"}
    images, labels = digits_test()
    logits = engine.create_context().run({"input": images[:16]})["logits"]
    assert (logits.argmax(1) == labels[:16]).mean() >= 0.9


def test_warm_timing_cache_times_nothing(graph, tmp_path):
    path = tmp_path / "timing.json"
    cold = wb.build(graph, wb.BuilderConfig(batch_size=8, timing_cache=path))
    data = json.loads(path.read_text())
    assert data["format"] == "workbench-timing-cache" and len(data["entries"]) == cold.meta["timing_cache"]["misses"]
    key = next(iter(data["entries"].values()))["key"]
    assert {"device", "backend", "precision", "layer"} <= set(key) and "shape" not in key["layer"]
    warm = wb.build(graph, wb.BuilderConfig(batch_size=8, timing_cache=path))
    assert warm.meta["timing_cache"]["misses"] == 0 and warm.meta["timing_cache"]["hits"] == len(data["entries"])
    assert warm.build_log["cached"].sum() == len(data["entries"])
    assert [l.tactic for l in warm.layers] == [l.tactic for l in cold.layers]
    other = wb.build(graph, wb.BuilderConfig(batch_size=4, timing_cache=path))   # new shapes: new entries
    assert other.meta["timing_cache"]["misses"] > 0


def test_level_zero_times_nothing_and_takes_the_first_tactic(graph):
    engine = wb.build(graph, wb.BuilderConfig(batch_size=4, builder_level=0))
    assert all(not t for t in engine.build_log["times_ms"])
    assert {l.tactic for l in engine.layers} == {"numpy"}


def test_tactic_sources_restrict_the_candidates(graph):
    engine = wb.build(graph, wb.BuilderConfig(batch_size=4, tactic_sources=["numpy"]))
    assert {l.tactic for l in engine.layers} == {"numpy"}
    with pytest.raises(BuildError, match="cudnn"):
        wb.BuilderConfig(tactic_sources=["cudnn"]) and wb.build(graph, wb.BuilderConfig(tactic_sources=["cudnn"]))


class _WrongTactic(NumpyTactic):
    """Adds 1 to every output: the autotuner must refuse it however fast it is."""
    name = "blas.wrong"

    def supports(self, layer, precision):
        return layer.op == "Conv"

    def run(self, state, inputs, outputs=None, stream=None):
        return [r + 1 for r in super().run(state, inputs, outputs, stream)]


def test_a_tactic_that_disagrees_with_the_oracle_is_refused(graph):
    engine = wb.build(graph, wb.BuilderConfig(batch_size=2, builder_level=0))
    backend = CpuBackend()
    backend._tactics.insert(0, _WrongTactic())
    layers = [l for l in engine.layers if l.op == "Conv"]
    specs = {n: (tuple(t["shape"]), t["dtype"]) for n, t in engine.meta["tensors"].items()}
    specs["input"] = ((2, 1, 8, 8), "float32")
    rows = autotune(layers, engine.weights, specs, backend, level=1, cache=TimingCache())
    for row in rows:
        assert row.choice != "blas.wrong"
        assert "disagrees with the CPU oracle" in row.rejected["blas.wrong"]


def test_a_corrupt_timing_cache_is_refused_with_its_path(graph, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(BuildError, match="bad.json"):
        wb.build(graph, wb.BuilderConfig(batch_size=2, timing_cache=path))
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BuildError, match="not a workbench timing cache"):
        wb.build(graph, wb.BuilderConfig(batch_size=2, timing_cache=path))


def test_cpu_profile_has_one_row_per_layer_with_rates(graph):
    engine = wb.build(graph, wb.BuilderConfig(batch_size=8))
    images, _ = digits_test()
    table = engine.create_context().profile({"input": images[:8]}, iters=3)
    assert list(table["layer"]) == [l.name for l in engine.layers]
    assert {"time_ms", "percent", "flops", "bytes", "tflops", "gbps", "shapes"} <= set(table.columns)
    assert table["percent"].sum() == pytest.approx(100.0)
    conv1 = table.set_index("layer").loc["conv1"]
    w = engine.weights[engine.layers[1].inputs[1]]                      # [16, 1, 3, 3]
    assert conv1["flops"] == 2 * 8 * 16 * 8 * 8 * int(np.prod(w.shape[1:]))
