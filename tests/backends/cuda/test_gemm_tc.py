"""Every kernels.gemm_tc_* tactic (kernels/gemm_tc.cu) against the CPU oracle: partial tiles in M
and N, odd N (scalar stores), K not a multiple of BK, N-D activations, each activation, bias
with beta folded in, residual, fp32 output; graph capture; and the layers prepare refuses."""
from __future__ import annotations

import numpy as np
import pytest
from gemm_cases import ACTIVATIONS, assert_graph_capturable, fused, layer, rand
from gpu_checks import assert_matches_oracle, cp, run_tactic  # noqa: F401

from workbench.builder.oracle import oracle_outputs, rel_l2, tolerance

pytestmark = pytest.mark.gpu


def _tactics():
    from workbench.backends.cuda.tactics.gemm_tc import CONFIGS, TensorCoreGemm
    return [TensorCoreGemm(c) for c in CONFIGS]


@pytest.fixture(params=range(4), ids=lambda i: _tactics()[i].name.rsplit("_", 1)[1])
def tactic(request):
    return _tactics()[request.param]


@pytest.mark.parametrize("m,k,n", [(1, 8, 8), (37, 40, 29), (130, 72, 200), (256, 256, 256), (300, 1000, 131),
                                   (64, 24, 64)])
def test_matmul_shapes(cp, tactic, m, k, n):
    rng = np.random.default_rng(m + k + n)
    a, w = rand(rng, (m, k), "fp16"), rand(rng, (k, n), "fp16")
    assert_matches_oracle(tactic, layer("MatMul", ["a", "w"], "fp16"), {"w": w}, [a, w])


@pytest.mark.parametrize("activation,params", ACTIVATIONS)
def test_fused_gemm_nd_bias_residual_activation(cp, tactic, activation, params):
    rng = np.random.default_rng(1)
    a, w, bias, z = (rand(rng, s, "fp16") for s in ((3, 45, 64), (64, 72), (72,), (3, 45, 72)))
    lay = fused(["a", "w", "bias", "z"], "fp16", epilogue_bias=1, activation=activation, activation_params=params)
    assert_matches_oracle(tactic, lay, {"w": w, "bias": bias}, [a, w, bias, z])


def test_gemm_trans_b_alpha_beta(cp, tactic):
    rng = np.random.default_rng(2)
    a, w, c = rand(rng, (70, 48), "fp16"), rand(rng, (90, 48), "fp16"), rand(rng, (1, 90), "fp16")
    lay = layer("Gemm", ["a", "w", "c"], "fp16", {"transB": 1, "alpha": 0.5, "beta": 1.5})
    assert_matches_oracle(tactic, lay, {"w": w, "c": c}, [a, w, c])


def test_float32_output_and_residual(cp, tactic):
    rng = np.random.default_rng(3)
    a, w, bias = rand(rng, (50, 32), "fp16"), rand(rng, (32, 40), "fp16"), rand(rng, (40,), "fp16")
    z = rand(rng, (50, 40), "fp32")
    lay = fused(["a", "w", "bias", "z"], "fp16", epilogue_bias=1, activation="Relu")
    want = np.maximum(a.astype(np.float64) @ w.astype(np.float64) + bias + z, 0)
    got = run_tactic(tactic, lay, {"w": w, "bias": bias}, [a, w, bias, z], [(50, 40)], ["float32"])[0]
    assert got.dtype == np.float32 and rel_l2(got, want) <= tolerance("fp16")


def test_bert_sized_gemm(cp, tactic):
    """BERT-base FFN shape (M = 32 x 128 tokens, K 768, N 3072) with bias and tanh GELU."""
    rng = np.random.default_rng(4)
    a, w, bias = rand(rng, (4096, 768), "fp16"), rand(rng, (768, 3072), "fp16", 0.05), rand(rng, (3072,), "fp16")
    lay = fused(["a", "w", "bias"], "fp16", epilogue_bias=1, activation="Gelu", activation_params=[1.0])
    assert_matches_oracle(tactic, lay, {"w": w, "bias": bias}, [a, w, bias])


def test_graph_capture(cp, tactic):
    rng = np.random.default_rng(5)
    a, w, bias, z = (rand(rng, s, "fp16") for s in ((100, 64), (64, 96), (96,), (100, 96)))
    lay = fused(["a", "w", "bias", "z"], "fp16", epilogue_bias=1, activation="Relu")
    assert_graph_capturable(tactic, lay, {"w": w, "bias": bias}, [a, w, bias, z], (100, 96), np.float16)


def test_prepare_refuses_what_the_kernel_cannot_do(cp):
    tactic = _tactics()[0]
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="not a constant weight"):
        tactic.prepare(layer("MatMul", ["a", "b"], "fp16"), {})
    with pytest.raises(ValueError, match="K % 8"):
        tactic.prepare(layer("MatMul", ["a", "w"], "fp16"), {"w": rand(rng, (20, 16), "fp16")})
    with pytest.raises(ValueError, match="constant bias"):
        tactic.prepare(layer("Gemm", ["a", "w", "c"], "fp16"), {"w": rand(rng, (16, 8), "fp16"),
                                                                "c": rand(rng, (4, 8), "fp16")})


def test_matches_cublas_on_the_same_layer(cp):
    """Same numbers as the cuBLAS tactic up to fp16 output rounding (both accumulate in fp32)."""
    from workbench.backends.cuda.tactics.gemm import CublasGemm
    rng = np.random.default_rng(7)
    a, w = rand(rng, (256, 512), "fp16"), rand(rng, (512, 256), "fp16")
    lay = layer("MatMul", ["a", "w"], "fp16")
    lay.output_shapes, lay.output_dtypes = [(256, 256)], ["float16"]
    ref = run_tactic(CublasGemm(), lay, {"w": w}, [a, w])[0]
    for tactic in _tactics():
        got = run_tactic(tactic, lay, {"w": w}, [a, w])[0]
        assert rel_l2(got, ref) < 2e-3, tactic.name
    assert rel_l2(ref, oracle_outputs(lay, {"w": w}, [a, w])[0]) < 2e-3


def test_square_4096_with_bias(cp, tactic):
    """bench/sparse_gemm.py's dense layer (4096^3 + bias), where the autotuner once rejected every
    gemm_tc tile against the oracle: the kernels must match it at this size too."""
    rng = np.random.default_rng(5)
    a, w, bias = rand(rng, (4096, 4096), "fp16"), rand(rng, (4096, 4096), "fp16"), rand(rng, (4096,), "fp16")
    lay = fused(["a", "w", "bias"], "fp16", epilogue_bias=1)
    assert_matches_oracle(tactic, lay, {"w": w, "bias": bias}, [a, w, bias])
