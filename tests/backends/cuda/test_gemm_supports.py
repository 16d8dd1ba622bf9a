"""CPU-only: which layers each GEMM tactic accepts (supports() never touches the GPU), how
gemm_spec reads the GEMM math off a layer, and the batch-folding helper of matmul_into."""
from __future__ import annotations

import pytest
from gemm_cases import fused, layer

from workbench.backends.cuda.tactics.gemm import CublasGemm
from workbench.backends.cuda.tactics.gemm_common import _blas_view, _collapse, gemm_spec
from workbench.backends.cuda.tactics.gemm_tc import CONFIGS, TensorCoreGemm
from workbench.backends.cuda.tactics.nvmath_gemm import CublasLtGemm


def test_names_and_sources():
    assert CublasGemm().name == "cublas.gemm" and CublasGemm().source == "cublas"
    names = [TensorCoreGemm(c).name for c in CONFIGS]
    assert "kernels.gemm_tc_128x128x32" in names and len(set(names)) == len(CONFIGS) >= 3
    assert all(n.startswith("kernels.gemm_tc_") for n in names)
    assert CublasLtGemm().source == "nvmath"


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
def test_cublas_takes_every_gemm_layer_at_float_precisions(precision):
    tactic = CublasGemm()
    assert tactic.supports(layer("MatMul", ["a", "b"], precision), precision)
    assert tactic.supports(layer("Gemm", ["a", "w", "c"], precision, {"transA": 1, "transB": 1}), precision)
    assert tactic.supports(fused(["a", "w", "c", "z"], precision, activation="HardSwish"), precision)


def test_cublas_refuses_other_ops_precisions_and_unknown_activations():
    tactic = CublasGemm()
    assert not tactic.supports(layer("Conv", ["x", "w"], "fp16"), "fp16")
    assert not tactic.supports(layer("MatMul", ["a", "b"], "int8"), "int8")
    assert not tactic.supports(layer("MatMul", ["a", "b"], "bf16"), "bf16")
    assert not tactic.supports(fused(["a", "w"], "fp16", activation="Softplus"), "fp16")


def test_tensor_core_kernel_is_fp16_without_transposed_a():
    tactic = TensorCoreGemm(CONFIGS[0])
    assert tactic.supports(fused(["a", "w", "c"], "fp16", epilogue_bias=1, activation="Gelu",
                                 activation_params=[0.0]), "fp16")
    assert tactic.supports(layer("Gemm", ["a", "w"], "fp16", {"transB": 1}), "fp16")
    assert not tactic.supports(layer("Gemm", ["a", "w"], "fp16", {"transA": 1}), "fp16")
    for precision in ("fp32", "tf32", "int8"):
        assert not tactic.supports(layer("MatMul", ["a", "w"], precision), precision)


def test_cublaslt_epilogues_are_relu_and_tanh_gelu_only():
    tactic = CublasLtGemm()
    for activation, params in [("", []), ("Relu", []), ("Gelu", [1.0]), ("Gelu", [0.0])]:
        lay = fused(["a", "w", "c"], "fp16", epilogue_bias=1, activation=activation, activation_params=params)
        assert tactic.supports(lay, "fp16"), activation
    erf_gelu = fused(["a", "w"], "fp32", activation="Gelu", activation_params=[0.0])
    assert not tactic.supports(erf_gelu, "fp32")           # the tanh form only passes for half outputs
    for activation, params in [("Sigmoid", []), ("Clip", [0.0, 6.0])]:
        lay = fused(["a", "w"], "fp16", activation=activation, activation_params=params)
        assert not tactic.supports(lay, "fp16"), activation
    assert tactic.supports(layer("MatMul", ["a", "w"], "tf32"), "tf32")
    assert not tactic.supports(layer("Gemm", ["a", "w"], "fp32", {"transA": 1}), "fp32")


def test_gemm_spec_reads_the_math_like_the_cpu_kernels():
    spec = gemm_spec(layer("Gemm", ["a", "w", "c"], "fp32", {"transB": 1, "alpha": 2.0, "beta": 0.5}))
    assert (spec.trans_b, spec.alpha, spec.bias_scale, spec.c_index, spec.nd) == (True, 2.0, 0.5, 2, False)
    assert gemm_spec(layer("Gemm", ["a", "w", "c"], "fp32", {"beta": 0.0})).c_index is None   # beta 0 drops C
    epilogue = gemm_spec(fused(["a", "w", "c", "z"], "fp16", epilogue_bias=1, beta=3.0, activation="Gelu",
                               activation_params=[1.0]))
    assert (epilogue.bias_scale, epilogue.nd, epilogue.z_index, epilogue.activation[0]) == (1.0, True, 3, 9)
    inside = gemm_spec(fused(["a", "w", "c"], "fp16"))                     # Gemm's C: 2-D semantics
    assert (inside.nd, inside.c_index) == (False, 2)
    assert gemm_spec(fused(["a", "w", ""], "fp16")).c_index is None
    assert gemm_spec(layer("MatMul", ["a", "b"], "fp16")).nd


def test_batch_dims_fold_into_one_strided_batch_when_strides_allow():
    # out [2, 3, M, N] contiguous, A broadcast over the 3, B over the 2: only the inner dim folds
    batch = (2, 3)
    a_strides, b_strides, c_strides = (1000, 0), (0, 400), (600, 200)
    assert _collapse(batch, [a_strides, b_strides, c_strides]) == (1, 3, (0, 400, 200))
    # fully contiguous batches fold into one call of 6
    assert _collapse(batch, [(3000, 1000), (1200, 400), (600, 200)]) == (0, 6, (1000, 400, 200))
    assert _collapse((1, 1), [(0, 0), (0, 0), (0, 0)]) == (0, 1, (0, 0, 0))


def test_blas_view_passes_transposes_without_copies():
    assert _blas_view((4, 6), (24, 4), 4, "A") == (0, 6)        # row-major: OP_N, ld = row length
    assert _blas_view((6, 4), (4, 24), 4, "A") == (1, 6)        # transposed view: OP_T
    with pytest.raises(ValueError, match="no unit stride"):
        _blas_view((4, 6), (48, 8), 4, "A")
