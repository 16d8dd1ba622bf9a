"""cublas.gemm and gemm_common.gemm_into against the CPU oracle: MatMul (2-D, N-D, batched with
broadcasting, vectors), Gemm (transA/transB, alpha, beta, C of every broadcast shape) and
FusedGemm (each activation, residual, both bias modes), in fp32, tf32 and fp16; and the run
captured into a CUDA graph without allocating."""
from __future__ import annotations

import numpy as np
import pytest
from gemm_cases import ACTIVATIONS, DT, assert_graph_capturable, fused, layer, rand
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

from workbench.builder.oracle import rel_l2, tolerance

pytestmark = pytest.mark.gpu

PRECISIONS = ("fp32", "tf32", "fp16")


def _tactic():
    from workbench.backends.cuda.tactics.gemm import CublasGemm
    return CublasGemm()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("a_shape,b_shape,b_is_weight", [
    ((37, 50), (50, 29), True),                 # odd sizes
    ((2, 3, 37, 64), (64, 48), True),           # N-D activation x 2-D weight: one GEMM, batch folded in M
    ((2, 3, 16, 24), (2, 3, 24, 20), False),    # both batched (attention-like)
    ((2, 1, 16, 24), (3, 24, 20), False),       # batch broadcast on both sides
    ((4, 16, 24), (24, 20), False),             # 2-D activation B, batched A
    ((24,), (3, 24, 20), False),                # vector A
    ((5, 16, 24), (24,), False),                # vector B
])
def test_matmul(cp, precision, a_shape, b_shape, b_is_weight):
    rng = np.random.default_rng(0)
    a, b = rand(rng, a_shape, precision), rand(rng, b_shape, precision)
    lay = layer("MatMul", ["a", "w" if b_is_weight else "b"], precision)
    assert_matches_oracle(_tactic(), lay, {"w": b} if b_is_weight else {}, [a, b])


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (29,), (1, 29), (33, 1), (33, 29), ()])
def test_gemm(cp, precision, trans_a, trans_b, c_shape):
    rng = np.random.default_rng(1)
    m, k, n = 33, 40, 29
    a = rand(rng, (k, m) if trans_a else (m, k), precision)
    w = rand(rng, (n, k) if trans_b else (k, n), precision)
    names, weights, host = ["a", "w"], {"w": w}, [a, w]
    if c_shape is not None:
        weights["c"] = rand(rng, c_shape, precision)
        names.append("c")
        host.append(weights["c"])
    lay = layer("Gemm", names, precision, {"transA": trans_a, "transB": trans_b, "alpha": 0.75, "beta": 1.5})
    assert_matches_oracle(_tactic(), lay, weights, host)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("activation,params", ACTIVATIONS)
def test_fused_gemm_activations_bias_residual(cp, precision, activation, params):
    rng = np.random.default_rng(2)
    a, w, bias, z = (rand(rng, s, precision) for s in ((2, 9, 48), (48, 40), (40,), (2, 9, 40)))
    lay = fused(["a", "w", "bias", "z"], precision, epilogue_bias=1, activation=activation, activation_params=params)
    assert_matches_oracle(_tactic(), lay, {"w": w, "bias": bias}, [a, w, bias, z])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fused_gemm_gemm_bias_with_beta_and_transposed_weight(cp, precision):
    rng = np.random.default_rng(3)
    a, w, c, z = (rand(rng, s, precision) for s in ((17, 24), (30, 24), (30,), (17, 30)))
    lay = fused(["a", "w", "c", "z"], precision, transB=1, alpha=0.5, beta=2.0, activation="Relu")
    assert_matches_oracle(_tactic(), lay, {"w": w, "c": c}, [a, w, c, z])


def test_fused_gemm_activation_bias_of_an_activation(cp):
    """epilogue_bias=1 with C an activation that broadcasts ([1, N] here) rather than a weight."""
    rng = np.random.default_rng(7)
    a, w, c = rand(rng, (12, 16), "fp16"), rand(rng, (16, 24), "fp16"), rand(rng, (1, 24), "fp16")
    lay = fused(["a", "w", "c"], "fp16", epilogue_bias=1, activation="SiLU")
    assert_matches_oracle(_tactic(), lay, {"w": w}, [a, w, c])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_gemm_into_transposed_views_bias_residual(cp, precision):
    """The helper the convolution tactics call: transposed views go to cuBLAS with OP_T, no copy."""
    from workbench.backends.cuda.tactics.gemm_common import gemm_into
    rng = np.random.default_rng(4)
    a, w, bias, z = (rand(rng, s, precision) for s in ((70, 36), (52, 36), (52,), (70, 52)))
    out = cp.empty((70, 52), DT[precision])
    gemm_into(cp.asarray(a), cp.asarray(w).T, out, precision=precision, bias=cp.asarray(bias),
              residual=cp.asarray(z), activation=(1, 0.0, 0.0))
    want = np.maximum(a.astype(np.float64) @ w.astype(np.float64).T + bias + z, 0)
    assert rel_l2(cp.asnumpy(out), want) <= tolerance(precision)


def test_fp32_is_exact_fp32_not_tf32(cp):
    """fp32 must not run on TF32 tensor cores: with K = 4096, TF32 operand rounding alone gives a
    relative error of ~3e-4, three times the fp32 tolerance."""
    rng = np.random.default_rng(5)
    a, w = rng.standard_normal((64, 4096)).astype(np.float32), rng.standard_normal((4096, 64)).astype(np.float32)
    err = assert_matches_oracle(_tactic(), layer("MatMul", ["a", "w"], "fp32"), {"w": w}, [a, w])
    assert err < 1e-5


@pytest.mark.parametrize("batched", [False, True])
def test_run_is_graph_capturable_and_allocates_nothing(cp, batched):
    rng = np.random.default_rng(6)
    if batched:
        a, b = rand(rng, (2, 3, 16, 24), "fp16"), rand(rng, (3, 24, 20), "fp16")
        assert_graph_capturable(_tactic(), layer("MatMul", ["a", "b"], "fp16"), {}, [a, b], (2, 3, 16, 20), np.float16)
        return
    a, w, bias, z = (rand(rng, s, "fp16") for s in ((64, 96), (96, 80), (80,), (64, 80)))
    lay = fused(["a", "w", "bias", "z"], "fp16", epilogue_bias=1, activation="Gelu", activation_params=[1.0])
    assert_graph_capturable(_tactic(), lay, {"w": w, "bias": bias}, [a, w, bias, z], (64, 80), np.float16)
