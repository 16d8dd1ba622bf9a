"""The CLI builds, runs, benches, compares, sweeps and inspects through the same API, prints what the
builder did, and reports errors without tracebacks, naming the flag or the culprit.

Most tests run `main(argv)` in-process on the bundled digits CNN; the references are independent:
onnxruntime's accuracy on the digits test set, the engine read back from the written plan, the
JSON/CSV files read back."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pandas as pd
import pytest

import workbench as wb
from workbench.cli import main
from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
from workbench.evaluate.metrics import accuracy

from conftest import ort_run

MODEL = str(digits_model_path())


def _ort_accuracy() -> float:
    images, labels = digits_test()
    return accuracy(ort_run(onnx.load(MODEL), {"input": images})["logits"], labels)


def _line(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def test_build_run_inspect(tmp_path, tiny_model, capsys):
    model_path, plan_path = tmp_path / "m.onnx", tmp_path / "m.wbplan"
    onnx.save(tiny_model, model_path)
    assert main(["build", str(model_path), "-o", str(plan_path), "--profile", "1,2,4"]) == 0
    engine = wb.Engine.load(plan_path)
    assert engine.profile.max == 4
    assert main(["run", str(plan_path), "--batch", "3", "--iters", "2"]) == 0
    assert "logits: shape (3, 5)" in capsys.readouterr().out
    assert main(["inspect", str(plan_path)]) == 0
    assert "Conv" in capsys.readouterr().out


def test_build_summary_and_warm_timing_cache(tmp_path, capsys):
    plan, cache = tmp_path / "d.wbplan", tmp_path / "tc.json"
    argv = ["build", MODEL, "-o", str(plan), "--batch", "4", "--level", "1", "--timing-cache", str(cache),
            "--tactic-sources", "numpy,blas", "--layer-precision", "conv1=fp16"]
    assert main(argv) == 0
    cold = capsys.readouterr().out
    engine = wb.Engine.load(plan)
    misses = engine.meta["timing_cache"]["misses"]
    assert misses > 0 and f"timing cache: 0 hits, {misses} misses ({cache})" in cold
    # the printed summary is the plan's own record: layers, tactics chosen, arena vs naive bytes
    chosen = engine.build_log["choice"].value_counts()
    assert f"build: {len(engine.layers)} layers, builder level 1" in cold
    assert all(f"{name} x{n}" in _line(cold, "tactics:") for name, n in chosen.items())
    assert set(chosen.index) <= {"numpy"} | {t for t in chosen.index if t.startswith("blas")}
    assert f"memory: arena {engine.memory['arena_bytes']:,} B vs naive {engine.memory['naive_bytes']:,} B" in cold
    layers = engine.to_dataframe().set_index("layer")
    assert layers.loc["conv1", "precision"] == "fp16" and layers.loc["conv2", "precision"] == "fp32"

    assert main(argv) == 0                   # warm: every timed layer comes from the cache
    warm = capsys.readouterr().out
    assert f"timing cache: {misses} hits, 0 misses" in warm

    assert main(["inspect", str(plan), "--log"]) == 0   # a loaded plan tells the same story
    shown = capsys.readouterr().out
    assert _line(shown, "memory:") == _line(warm, "memory:") and _line(shown, "tactics:") == _line(warm, "tactics:")
    assert "fastest of" in shown or "only candidate" in shown    # the autotuner's per-layer log


def test_precision_set_strict_matches_the_api(tmp_path, capsys):
    plan = tmp_path / "q.wbplan"
    assert main(["build", MODEL, "-o", str(plan), "--precision", "fp16,int8", "--strict",
                 "--calibration", "digits", "--batch", "4", "--level", "0"]) == 0
    got = wb.Engine.load(plan).to_dataframe()
    images, _ = digits_train(500)
    want = wb.build(wb.load(MODEL), wb.BuilderConfig(precision={"fp16", "int8"}, strict=True, batch_size=4,
                                                     builder_level=0,
                                                     calibration_data=[{"input": images[i:i + 50]}
                                                                       for i in range(0, 500, 50)])).to_dataframe()
    assert got["precision"].tolist() == want["precision"].tolist()
    assert {"int8", "fp16"} <= set(got["precision"]) and "fp32" not in set(got["precision"])
    assert "int8 x" in _line(capsys.readouterr().out, "precisions:")


def test_bench_writes_one_row_per_batch(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", MODEL, "--batch", "1,4", "--iters", "3", "--precision", "fp16", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["precision"] == "fp16" and record["backend"] == "cpu" and record["iters"] == 3
    rows = record["rows"]
    assert [r["batch"] for r in rows] == [1, 4]
    for r in rows:
        assert 0 < r["latency.median_ms"] <= r["latency.p90_ms"] <= r["latency.p99_ms"]
        assert r["throughput.per_s"] == pytest.approx(r["batch"] * 1e3 / r["latency.median_ms"])
    assert "throughput.per_s" in capsys.readouterr().out


def test_compare_against_onnxruntime(capsys):
    assert main(["compare", MODEL, "--precision", "fp16", "--against", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["output"])
    assert header.split() == ["output", "max_abs", "rel_l2", "cosine", "sqnr_db", "top1_agreement",
                              "accuracy", "reference.accuracy"]
    row = dict(zip(header.split(), out.splitlines()[out.splitlines().index(header) + 1].split()))
    assert row["output"] == "logits" and float(row["rel_l2"]) < 1e-2 and float(row["sqnr_db"]) > 30
    assert float(row["reference.accuracy"]) == pytest.approx(_ort_accuracy(), abs=1e-3)   # printed to 4 digits


def test_compare_random_data_on_any_model(tmp_path, tiny_model, capsys):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model, path)
    assert main(["compare", str(path), "--precision", "fp16", "--data", "random"]) == 0
    out = capsys.readouterr().out
    assert "random data, 64 rows" in out and "reference.accuracy" not in out     # no labels, no accuracy
    assert main(["compare", str(path), "--data", "digits"]) == 2                 # digits do not fit [N,3,8,8]
    err = capsys.readouterr().err
    assert "tiny.onnx" in err and "digits data is [N,1,8,8]" in err


def test_sweep_csv_has_precisions_times_batches(tmp_path, capsys):
    csv = tmp_path / "sweep.csv"
    assert main(["sweep", MODEL, "--precisions", "fp32,fp16", "--batches", "1,4", "--iters", "2",
                 "--csv", str(csv)]) == 0
    df = pd.read_csv(csv)
    assert list(zip(df["precision"], df["batch"])) == [("fp32", 1), ("fp32", 4), ("fp16", 1), ("fp16", 4)]
    assert (df["latency.median_ms"] > 0).all()
    assert df.loc[df["precision"] == "fp32", "accuracy"].tolist() == pytest.approx([_ort_accuracy()] * 2)
    assert main(["sweep", MODEL, "--precisions", "fp32", "--batches", "2", "--iters", "1", "--data", "random",
                 "--csv", str(csv)]) == 0
    assert pd.read_csv(csv)["accuracy"].isna().all()     # random images have no labels


@pytest.mark.parametrize("argv, flag, why", [
    (["build", MODEL, "-o", "x.wbplan", "--level", "5"], "--level", "invalid choice: 5"),
    (["build", MODEL, "-o", "x.wbplan", "--precision", "fp8"], "--precision", "'fp8' is not a precision"),
    (["build", MODEL, "-o", "x.wbplan", "--layer-precision", "conv1"], "--layer-precision", "SELECTOR=PRECISION"),
    (["build", MODEL, "-o", "x.wbplan", "--backend", "tpu"], "--backend", "invalid choice: 'tpu'"),
    (["bench", MODEL, "--batch", "1,x"], "--batch", "positive integers"),
    (["sweep", MODEL, "--precisions", "fp32,fp64"], "--precisions", "'fp64' is not a precision"),
    (["compare", MODEL, "--against", "tensorrt"], "--against", "invalid choice: 'tensorrt'"),
])
def test_bad_flag_names_the_flag(argv, flag, why, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {flag}: " in err and why in err


@pytest.mark.parametrize("extra, culprit", [
    (["--layer-precision", "nosuch=fp16"], "selector 'nosuch' matches no layer"),
    (["--precision", "int8"], "--calibration digits|random"),
    (["--tactic-sources", "cublas"], "['cublas'] are not known to backend 'cpu'"),
])
def test_build_error_is_one_line_naming_the_culprit(tmp_path, extra, culprit, capsys):
    assert main(["build", MODEL, "-o", str(tmp_path / "x.wbplan"), "--batch", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and culprit in err and "Traceback" not in err
    assert not (tmp_path / "x.wbplan").exists()


def test_cuda_backend_without_gpu_says_what_is_missing(tmp_path, capsys):
    if wb.backends.cuda_available():
        pytest.skip("this machine has CUDA; test_cuda_build covers it")
    assert main(["build", MODEL, "-o", str(tmp_path / "x.wbplan"), "--backend", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "backend='cuda' is not available" in err and re.search(r"CuPy|GPU|CUDA", err)


@pytest.mark.gpu
def test_cuda_build_and_run(tmp_path, capsys):
    if not wb.backends.cuda_available():
        pytest.skip("no CUDA GPU (CuPy missing or no device): the gpu tests run on the lent H100")
    plan = tmp_path / "g.wbplan"
    assert main(["build", MODEL, "-o", str(plan), "--backend", "cuda", "--batch", "8"]) == 0
    assert "layers on cuda" in capsys.readouterr().out
    assert main(["run", str(plan), "--iters", "2"]) == 0
    images, _ = digits_test(8)
    want = ort_run(onnx.load(MODEL), {"input": images})["logits"]
    got = wb.Engine.load(plan).create_context().run({"input": images})["logits"]
    got = got.get() if hasattr(got, "get") else got
    assert np.abs(np.asarray(got) - want).max() < 1e-3


def test_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.onnx" in err and "Traceback" not in err
