"""CUDA engines end to end on the GPU, against the CPU engine (the oracle): whole models in fp32
and fp16, CUDA graphs on and off, CuPy in and out, contexts in threads, plans, memory, profile."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path, digits_test

pytestmark = pytest.mark.gpu
TOL = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 1e-2}


@pytest.fixture(scope="module")
def cp():
    if not wb.backends.cuda_available():
        pytest.skip("no CUDA GPU (CuPy missing or no device): the gpu tests run on the lent H100")
    import cupy
    return cupy


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _models():
    rng = np.random.default_rng(0)
    images, _ = digits_test()
    yield "digits", wb.load(digits_model_path()), {"input": images[:8]}
    yield "resnet18-64px", wb.load(zoo.resnet18(image_size=64)), {"input": rng.standard_normal((8, 3, 64, 64), np.float32)}
    yield "mobilenet_v2-64px", wb.load(zoo.mobilenet_v2(image_size=64)), {"input": rng.standard_normal((8, 3, 64, 64), np.float32)}
    ids = rng.integers(0, 1000, (8, 16), dtype=np.int64)
    yield "bert-2l", wb.load(zoo.bert()), {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    yield "inception-block", wb.load(zoo.inception_block(size=14)), {"input": rng.standard_normal((8, 192, 14, 14), np.float32)}


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
@pytest.mark.parametrize("name,graph,feeds", list(_models()), ids=[m[0] for m in _models()])
def test_whole_model_matches_the_cpu_engine(cp, name, graph, feeds, precision):
    optimized, _ = wb.optimize(graph)
    # a GPU engine at a low precision must be about as accurate as a faithful engine at that
    # precision: the CPU engine at the same precision rounds at the same points, but summation order
    # differs, and through a deep net with random weights that difference grows to the precision's
    # own size; so the GPU's error against fp32 may be at most 1.5x the CPU's (or the tolerance)
    oracle = dict(batch_size=8, tactic_sources=["numpy"])
    reference = wb.build(optimized, wb.BuilderConfig(precision=precision, **oracle)).create_context().run(feeds)
    exact = wb.build(optimized, wb.BuilderConfig(precision="fp32", **oracle)).create_context().run(feeds)
    engine = wb.build(optimized, wb.BuilderConfig(backend="cuda", precision=precision, batch_size=8))
    got = engine.create_context().run(feeds)
    for key, want in reference.items():
        bound = max(TOL[precision], 1.5 * _rel(want, exact[key]))
        assert _rel(got[key], exact[key]) <= bound, (name, key, engine.build_log[["layer", "choice"]])


def test_cuda_graph_replay_equals_eager_and_cupy_in_gives_cupy_out(cp):
    graph, _ = wb.optimize(wb.load(zoo.resnet18(image_size=64)))
    engine = wb.build(graph, wb.BuilderConfig(backend="cuda", precision="fp16", batch_size=4))
    x = np.random.default_rng(1).standard_normal((4, 3, 64, 64), np.float32)
    graphed, eager = engine.create_context(), engine.create_context(cuda_graph=False)
    assert graphed.uses_cuda_graph
    a = graphed.run({"input": x})["logits"]
    b = eager.run({"input": x})["logits"]
    # each context's cuDNN tactic times its candidate plans on first use, so two contexts may run
    # different (equally valid) plans: equal to fp16 tolerance, not bit for bit
    assert _rel(a, b) <= TOL["fp16"]
    np.testing.assert_array_equal(graphed.run({"input": x})["logits"], a)       # replay is deterministic
    out = graphed.run({"input": cp.asarray(x)})["logits"]
    assert isinstance(out, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(out), a)
    assert engine.memory["arena_bytes"] <= 0.5 * engine.memory["naive_bytes"]


def test_contexts_in_threads(cp):
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    engine = wb.build(graph, wb.BuilderConfig(backend="cuda", batch_size=8))
    images, _ = digits_test()
    want = wb.build(graph, wb.BuilderConfig(batch_size=8)).create_context().run({"input": images[:8]})["logits"]
    errors = []

    def work(seed):
        ctx = engine.create_context()
        for _ in range(20):
            got = ctx.run({"input": images[:8]})["logits"]
            if _rel(got, want) > 1e-4:
                errors.append((seed, _rel(got, want)))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_dynamic_batch_profile_runs_every_batch(cp):
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    engine = wb.build(graph, wb.BuilderConfig(backend="cuda", profile=(1, 8, 32)))
    cpu = wb.build(graph, wb.BuilderConfig(profile=(1, 8, 32))).create_context()
    images, _ = digits_test()
    ctx = engine.create_context()
    assert not ctx.uses_cuda_graph
    for batch in (1, 5, 8, 32):
        feeds = {"input": images[:batch]}
        assert _rel(ctx.run(feeds)["logits"], cpu.run(feeds)["logits"]) <= 1e-4


def test_plan_round_trip_and_profile(cp, tmp_path):
    graph, _ = wb.optimize(wb.load(zoo.resnet18(image_size=64)))
    engine = wb.build(graph, wb.BuilderConfig(backend="cuda", precision="fp16", batch_size=2))
    path = tmp_path / "r18.wbplan"
    engine.save(path)
    loaded = wb.Engine.load(path)
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64), np.float32)
    assert _rel(loaded.create_context().run({"input": x})["logits"],
                engine.create_context().run({"input": x})["logits"]) <= TOL["fp16"]
    table = engine.create_context().profile({"input": x}, iters=5)
    assert len(table) == len(engine.layers) and table["time_ms"].sum() > 0
    assert table.loc[table["op"] == "workbench::FusedConv", "tflops"].max() > 0


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_branches_on_parallel_streams_match_the_cpu_engine(cp, precision):
    """GoogLeNet's inception 3a with its four branches unmerged, on four streams: same numbers as
    the CPU engine, captured or eager, and the memory plan keeps parallel tensors apart."""
    graph, _ = wb.optimize(wb.load(zoo.inception_block(size=14)), disable=["merge_parallel_convs"])
    x = np.random.default_rng(2).standard_normal((4, 192, 14, 14), np.float32)
    want = wb.build(graph, wb.BuilderConfig(precision=precision, batch_size=4)).create_context().run({"input": x})
    engine = wb.build(graph, wb.BuilderConfig(backend="cuda", precision=precision, batch_size=4, max_streams=4))
    streams = engine.memory["streams"]
    assert streams["count"] == 4 and streams["parallel_layers"] >= 3
    graphed, eager = engine.create_context(), engine.create_context(cuda_graph=False)
    for ctx in (graphed, eager, graphed):           # the second graphed run replays the capture
        got = ctx.run({"input": x})
        for key in want:
            assert _rel(got[key], want[key]) <= TOL[precision], key
    serial = wb.build(graph, wb.BuilderConfig(backend="cuda", precision=precision, batch_size=4))
    assert "streams" not in serial.memory and serial.memory["arena_bytes"] <= engine.memory["arena_bytes"]
