"""nvmath.gemm_lt (cuBLASLt epilogues through nvmath-python's bindings) against the CPU oracle:
no epilogue, bias, ReLU + bias, tanh-GELU + bias, residual as C, alpha and beta, transposed
weights, N-D activations, in fp32, tf32 and fp16; graph capture. Skips without nvmath."""
from __future__ import annotations

import numpy as np
import pytest
from gemm_cases import assert_graph_capturable, fused, layer, rand
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

pytestmark = pytest.mark.gpu
pytest.importorskip("nvmath")

PRECISIONS = ("fp32", "tf32", "fp16")


def _tactic():
    from workbench.backends.cuda.tactics.nvmath_gemm import CublasLtGemm
    return CublasLtGemm()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("activation,params", [("", []), ("Relu", []), ("Gelu", [1.0])])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_fused_gemm_epilogues(cp, precision, activation, params, with_bias, with_residual):
    rng = np.random.default_rng(0)
    a, w, bias, z = (rand(rng, s, precision) for s in ((2, 33, 64), (64, 72), (72,), (2, 33, 72)))
    names, weights, host = ["a", "w"], {"w": w}, [a, w]
    names.append("bias" if with_bias else "")
    host.append(bias if with_bias else None)
    if with_bias:
        weights["bias"] = bias
    if with_residual:
        names.append("z")
        host.append(z)
    lay = fused(names, precision, epilogue_bias=1, activation=activation, activation_params=params)
    assert_matches_oracle(_tactic(), lay, weights, host)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_gemm_trans_b_alpha_beta(cp, precision):
    rng = np.random.default_rng(1)
    a, w, c = rand(rng, (40, 48), precision), rand(rng, (24, 48), precision), rand(rng, (24,), precision)
    lay = layer("Gemm", ["a", "w", "c"], precision, {"transB": 1, "alpha": 0.5, "beta": 1.5})
    assert_matches_oracle(_tactic(), lay, {"w": w, "c": c}, [a, w, c])


def test_plans_lazily_when_the_shape_is_dynamic(cp):
    """Without a static output shape the plan is made on the first run; a second M gets its own."""
    from gpu_checks import run_tactic
    from workbench.builder.oracle import check_outputs, oracle_outputs
    rng = np.random.default_rng(2)
    w, bias = rand(rng, (32, 16), "fp16"), rand(rng, (16,), "fp16")
    tactic = _tactic()
    for m in (8, 24):
        a = rand(rng, (m, 32), "fp16")
        lay = fused(["a", "w", "bias"], "fp16", epilogue_bias=1, activation="Relu")
        want = oracle_outputs(lay, {"w": w, "bias": bias}, [a, w, bias])
        got = run_tactic(tactic, lay, {"w": w, "bias": bias}, [a, w, bias], [(m, 16)], ["float16"])
        assert check_outputs(lay, got, want)[0]


def test_graph_capture(cp):
    rng = np.random.default_rng(3)
    a, w, bias, z = (rand(rng, s, "fp16") for s in ((128, 64), (64, 96), (96,), (128, 96)))
    lay = fused(["a", "w", "bias", "z"], "fp16", epilogue_bias=1, activation="Gelu", activation_params=[1.0])
    assert_graph_capturable(_tactic(), lay, {"w": w, "bias": bias}, [a, w, bias, z], (128, 96), np.float16)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_erf_gelu_takes_the_tanh_epilogue_only_in_half(cp, precision):
    """BERT's erf GELU: cuBLASLt's tanh epilogue is within half rounding, so fp16 layers may use it."""
    rng = np.random.default_rng(4)
    a, w, bias = rand(rng, (96, 64), precision), rand(rng, (64, 128), precision), rand(rng, (128,), precision)
    lay = fused(["a", "w", "bias"], precision, epilogue_bias=1, activation="Gelu")
    assert _tactic().supports(lay, precision) == (precision == "fp16")
    if precision == "fp16":
        assert_matches_oracle(_tactic(), lay, {"w": w, "bias": bias}, [a, w, bias])
