"""Half-precision FusedAttention and FusedLayerNorm on the CPU compute like fused GPU kernels
(float32 scores, softmax and statistics), so fp16 engines run them in fp16 without Cast layers."""
from __future__ import annotations

import numpy as np

import workbench as wb
from workbench.backends.cpu.registry import NodeInfo, lookup
from workbench.evaluate import zoo


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_half_attention_is_float32_attention_rounded_once():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4, 16, 32)).astype(np.float32) for _ in range(3))
    mask = np.where(rng.random((2, 1, 1, 16)) < 0.2, -10000.0, 0.0).astype(np.float32)
    attention = lookup("workbench", "FusedAttention")
    attrs = {"scale": 1 / np.sqrt(32)}
    want = attention([q, k, v, mask], attrs, NodeInfo(1))
    got = attention([a.astype(np.float16) for a in (q, k, v, mask)], attrs, NodeInfo(1))
    assert got.dtype == np.float16
    assert _rel(got, want) < 2e-3          # fp16 operand rounding only: no fp16 softmax sums


def test_half_layer_norm_takes_float32_statistics():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 64, 768)) * 3 + 40).astype(np.float32)     # a large mean: fp16 sums would drift
    scale, bias = rng.standard_normal(768).astype(np.float32), rng.standard_normal(768).astype(np.float32)
    norm = lookup("workbench", "FusedLayerNorm")
    want = norm([x, scale, bias], {"axis": -1, "epsilon": 1e-5}, NodeInfo(1))
    got = norm([a.astype(np.float16) for a in (x, scale, bias)], {"axis": -1, "epsilon": 1e-5}, NodeInfo(1))
    assert got.dtype == np.float16 and _rel(got, want) < 2e-2


def test_fp16_bert_runs_attention_in_fp16_without_casts_around_it():
    graph, _ = wb.optimize(wb.load(zoo.bert()))
    engine = wb.build(graph, wb.BuilderConfig(batch_size=2, precision="fp16", builder_level=0))
    attention = [l for l in engine.layers if l.op == "FusedAttention"]
    assert attention and all(l.precision == "fp16" for l in attention)
    producers = {o: l for l in engine.layers for o in l.outputs}
    assert not any(producers[n].op == "Cast" for l in attention for n in l.inputs[:3] if n in producers)
