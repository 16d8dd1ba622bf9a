"""The benchmark's torch references (bench/_torch_reference.py) against our CPU engine, and the
benchmark scripts run end to end on the CPU.

The torch modules must compute what the zoo graphs compute with the same weights, or the GPU
benchmark's ratios compare different work. Tests needing torch skip without it (torch is never a
dependency of the package); the scripts' torch-free paths are tested everywhere.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.zoo.bert import bert_base

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))          # the scripts import their helpers as top-level modules

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_CUPY = importlib.util.find_spec("cupy") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the benchmark's reference only)")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rel_l2(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _ours(model, feeds, batch):
    config = wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=batch, builder_level=0)
    return wb.build(wb.load(model), config).create_context().run(feeds)


def _torch(module, feeds):
    import torch
    with torch.inference_mode():
        result = module(*(torch.from_numpy(v) for v in feeds.values()))
    result = result if isinstance(result, tuple) else (result,)
    return {name: t.numpy() for name, t in zip(module.output_names, result)}


def _bert_feeds(batch, seq, vocab, seed=0):
    bench_bert = _script("bert")
    ids = np.random.default_rng(seed).integers(0, vocab, (batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": bench_bert.attention_mask(batch, seq)}


@needs_torch
def test_resnet18_mirror_reproduces_our_engine():
    from _torch_reference import load_onnx_weights, resnet_from_onnx
    model = zoo.resnet18(seed=3, image_size=32, num_classes=10)
    feeds = {"input": np.random.default_rng(1).standard_normal((2, 3, 32, 32), dtype=np.float32)}
    module = resnet_from_onnx(model)
    assert load_onnx_weights(module, model) == []           # every initializer is a parameter
    got, want = _torch(module, feeds)["logits"], _ours(model, feeds, 2)["logits"]
    assert _rel_l2(got, want) <= 1e-4


@needs_torch
@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_bert_mirror_reproduces_our_engine_with_padding(attention):
    from _torch_reference import bert_from_onnx
    model = zoo.bert(seed=2, layers=2, hidden=64, heads=4, seq_len=16, vocab=100)
    feeds = _bert_feeds(4, 16, 100)
    assert (feeds["attention_mask"] == 0).any()              # padding is exercised
    got, want = _torch(bert_from_onnx(model, attention=attention), feeds), _ours(model, feeds, 4)
    for name in ("last_hidden_state", "pooler_output"):
        assert _rel_l2(got[name], want[name]) <= 1e-4, name


@needs_torch
def test_weights_load_by_name_transposing_matmul_operands_only():
    """The MLP has Gemm(transB=1) layers (torch layout) and a MatMul layer ([in, out]): one module
    holding all three reproduces our engine only if exactly the MatMul weight is transposed."""
    import torch
    from _torch_reference import load_onnx_weights
    model = zoo.mlp(seed=0)
    linears = torch.nn.ModuleDict({"fc1": torch.nn.Linear(64, 128), "fc2": torch.nn.Linear(128, 64),
                                   "fc3": torch.nn.Linear(64, 10)})
    assert load_onnx_weights(linears, model) == []
    x = np.random.default_rng(0).standard_normal((3, 64), dtype=np.float32)
    with torch.inference_mode():
        h = torch.from_numpy(x)
        for name in ("fc1", "fc2"):
            h = torch.relu(linears[name](h))
        got = linears["fc3"](h).numpy()
    (want,) = _ours(model, {"input": x}, 3).values()
    assert _rel_l2(got, want) <= 1e-5


@needs_torch
def test_weight_loading_names_the_parameter_it_cannot_fill():
    import torch
    from _torch_reference import load_onnx_weights
    model = zoo.mlp(seed=0)
    with pytest.raises(KeyError, match="'not_in_graph.weight'"):
        load_onnx_weights(torch.nn.ModuleDict({"not_in_graph": torch.nn.Linear(2, 2)}), model)
    with pytest.raises(ValueError, match=r"initializer 'fc1.weight': shape \(128, 64\) does not fit .*\(129, 64\)"):
        load_onnx_weights(torch.nn.ModuleDict({"fc1": torch.nn.Linear(64, 129)}), model)


def test_bert_base_preset_has_bert_base_dimensions():
    model = bert_base(layers=1, seq_len=8)
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert dims["embeddings.word_embeddings.weight"] == (30522, 768)
    assert dims["encoder.layer.0.intermediate.dense.weight"] == (768, 3072)
    heads = next(t for t in model.graph.initializer if t.name == "const.heads_dims")
    assert list(heads.int64_data or np.frombuffer(heads.raw_data, np.int64)) == [12, 64]
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert sum(n.op_type == "LayerNormalization" for n in model.graph.node) == 1 + 2      # embeddings + 1 layer


@needs_torch
def test_resnet50_script_on_cpu_matches_torch_and_writes_the_record(tmp_path):
    out = tmp_path / "resnet50.json"
    _script("resnet50").main(["--backend", "cpu", "--batch", "1", "--precision", "fp32", "--image-size", "32",
                              "--skip-compile", "--iters", "2", "--warmup", "0", "--builder-level", "0",
                              "--out", str(out)])
    doc = json.loads(out.read_text())
    assert {"device", "revision", "date", "runs"} <= set(doc)
    (run,) = doc["runs"]
    assert (run["model"], run["batch"], run["precision"]) == ("resnet50", 1, "fp32")
    ours, eager = run["ours"], run["torch_eager"]
    assert {"build_s", "warm_build_s", "latency_ms", "throughput_per_s", "rel_l2", "memory", "profile"} <= set(ours)
    assert ours["rel_l2"] <= 1e-4 and ours["correct"]        # the bottleneck mirror reproduces our engine
    assert eager["rel_l2"] == 0.0                            # fp32 eager is the reference itself
    assert run["ratios"]["vs_eager"] == pytest.approx(eager["latency_ms"] / ours["latency_ms"], rel=1e-3)
    assert "torch_compile" not in run and "vs_compile" not in run["ratios"]


def test_bert_script_engine_only_runs_without_torch(tmp_path):
    out = tmp_path / "bert.json"
    _script("bert").main(["--backend", "cpu", "--engine-only", "--batch", "2", "--precision", "fp32",
                          "--layers", "1", "--seq", "8", "--iters", "2", "--warmup", "0", "--builder-level", "0",
                          "--out", str(out)])
    (run,) = json.loads(out.read_text())["runs"]
    assert run["config"] == {"seq": 8, "layers": 1, "attention": "sdpa"}
    assert run["ours"]["latency_ms"] > 0 and run["ours"]["throughput_per_s"] > 0
    assert "rel_l2" not in run["ours"] and "torch_eager" not in run
    assert run["ours"]["warm_build_timing_cache"]["misses"] == 0     # the warm rebuild timed nothing


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed: --backend cuda would really run")
def test_cuda_backend_without_cupy_exits_saying_what_to_do(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _script("resnet50").main(["--engine-only", "--out", str(tmp_path / "x.json")])
    message = str(exit_info.value.code)
    assert "--backend cuda needs CuPy" in message and "--backend cpu --batch 1" in message
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed")
def test_reference_without_torch_exits_naming_engine_only():
    with pytest.raises(SystemExit, match="--engine-only"):
        _script("bert").main(["--backend", "cpu", "--batch", "1", "--layers", "1", "--seq", "8"])
