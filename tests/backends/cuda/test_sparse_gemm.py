"""cusparselt.gemm_2to4 (2:4-sparse FP16 GEMM through cuSPARSELt) against the CPU oracle: MatMul and
FusedGemm at several shapes (M not a multiple of 8 or 16 included, which runs through staging
buffers), bias with fused ReLU, GELU, an activation and a residual applied after the GEMM,
Gemm with transB, alpha and beta; lazy plans per M; graph capture; what it refuses; and whole
builds in which it competes (sparsity="enable") or does not (a dense weight).

The GPU tests skip without a GPU, or without a supported cuSPARSELt (pip install nvidia-cusparselt-cu13,
or point WB_CUSPARSELT_LIBRARY at libcusparseLt.so.0). Before any of them runs a cuSPARSELt kernel in
this process, the tactic's self-test runs its calls in a subprocess: if that fails (a kernel that faults
would poison this process's CUDA context, and with it every later GPU test), they fail with its report
instead. The `supports` checks, the release gate and the self-test's bookkeeping need no GPU.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from gemm_cases import assert_graph_capturable, fused, layer, rand
from gpu_checks import assert_matches_oracle, cp, run_tactic  # noqa: F401

from workbench.quant.sparsity import prune_2to4

gpu = pytest.mark.gpu

SPARSE = "cusparselt.gemm_2to4"


@pytest.fixture(scope="module")
def cusparselt(cp):
    from workbench.backends.cuda.tactics import cusparselt_binding
    if not cusparselt_binding.available():
        pytest.skip(f"cuSPARSELt is not available here: {cusparselt_binding.why_unavailable()}")
    from workbench.backends.cuda.tactics import sparse_gemm_check
    try:
        sparse_gemm_check.working_config()     # the subprocess self-test, once per process
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return cusparselt_binding


def _tactic():
    from workbench.backends.cuda.tactics.sparse_gemm import CusparseLtGemm
    return CusparseLtGemm()


def sparse_weight(rng, k: int, n: int, axis: int = 0, transposed: bool = False) -> np.ndarray:
    """A float16 weight [K, N] (or [N, K] when transposed) pruned to 2:4 along K."""
    w = rand(rng, (n, k) if transposed else (k, n), "fp16")
    return prune_2to4(w, axis=axis)[0]


def sparse(lay):
    lay.sparse = True
    return lay


@gpu
@pytest.mark.parametrize("a_shape,n", [((64, 256), 128), ((13, 64), 32), ((2, 33, 128), 64), ((1, 512), 256)])
def test_matmul_matches_oracle(cusparselt, a_shape, n):
    rng = np.random.default_rng(0)
    a, w = rand(rng, a_shape, "fp16"), sparse_weight(rng, a_shape[-1], n)
    assert_matches_oracle(_tactic(), sparse(layer("MatMul", ["a", "w"], "fp16")), {"w": w}, [a, w])


@gpu
@pytest.mark.parametrize("tanh", [1.0, 0.0])          # both forms: GELU in the shared epilogue kernel
def test_bias_gelu_at_m_1000(cusparselt, tanh):
    """M = 1000 is a multiple of 8 but not of 16; K = 768, N = 3072 (a BERT-base FFN)."""
    rng = np.random.default_rng(1)
    a, w, bias = rand(rng, (1000, 768), "fp16"), sparse_weight(rng, 768, 3072), rand(rng, (3072,), "fp16")
    lay = sparse(fused(["a", "w", "bias"], "fp16", epilogue_bias=1, activation="Gelu", activation_params=[tanh]))
    assert_matches_oracle(_tactic(), lay, {"w": w, "bias": bias}, [a, w, bias])


@gpu
@pytest.mark.parametrize("activation,params", [("", []), ("Relu", []), ("Gelu", [1.0]), ("Gelu", [0.0]),
                                               ("Sigmoid", [])])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_fused_gemm_epilogues(cusparselt, activation, params, with_bias, with_residual):
    rng = np.random.default_rng(2)
    a, w = rand(rng, (48, 128), "fp16"), sparse_weight(rng, 128, 64)
    bias, z = rand(rng, (64,), "fp16"), rand(rng, (48, 64), "fp16")
    names, weights, host = ["a", "w", "bias" if with_bias else ""], {"w": w}, [a, w, bias if with_bias else None]
    if with_bias:
        weights["bias"] = bias
    if with_residual:
        names.append("z")
        host.append(z)
    lay = sparse(fused(names, "fp16", epilogue_bias=1, activation=activation, activation_params=params))
    assert_matches_oracle(_tactic(), lay, weights, host)


@gpu
def test_gemm_trans_b_alpha_beta(cusparselt):
    """Gemm with the PyTorch Linear layout W [N, K] (2:4 along its last axis), alpha and beta."""
    rng = np.random.default_rng(3)
    a, c = rand(rng, (40, 96), "fp16"), rand(rng, (48,), "fp16")
    w = sparse_weight(rng, 96, 48, axis=-1, transposed=True)
    lay = sparse(layer("Gemm", ["a", "w", "c"], "fp16", {"transB": 1, "alpha": 0.5, "beta": 1.5}))
    assert_matches_oracle(_tactic(), lay, {"w": w, "c": c}, [a, w, c])


@gpu
def test_plans_lazily_one_per_m(cusparselt):
    """Without a static output shape the plan is made on the first run; each new M gets its own."""
    from workbench.builder.oracle import check_outputs, oracle_outputs
    rng = np.random.default_rng(4)
    w, bias = sparse_weight(rng, 64, 32), rand(rng, (32,), "fp16")
    tactic = _tactic()
    for m in (8, 24, 5):
        a = rand(rng, (m, 64), "fp16")
        lay = sparse(fused(["a", "w", "bias"], "fp16", epilogue_bias=1, activation="Relu"))
        want = oracle_outputs(lay, {"w": w, "bias": bias}, [a, w, bias])
        got = run_tactic(tactic, lay, {"w": w, "bias": bias}, [a, w, bias], [(m, 32)], ["float16"])
        ok, err = check_outputs(lay, got, want)
        assert ok, f"M={m}: rel L2 {err:.3g}"


@gpu
@pytest.mark.parametrize("m", [128, 100])              # 100: through the staging buffers
def test_graph_capture(cusparselt, m):
    rng = np.random.default_rng(5)
    a, w, bias, z = rand(rng, (m, 64), "fp16"), sparse_weight(rng, 64, 96), rand(rng, (96,), "fp16"), \
        rand(rng, (m, 96), "fp16")
    lay = sparse(fused(["a", "w", "bias", "z"], "fp16", epilogue_bias=1, activation="Gelu", activation_params=[1.0]))
    lay.output_shapes, lay.output_dtypes = [(m, 96)], ["float16"]
    assert_graph_capturable(_tactic(), lay, {"w": w, "bias": bias}, [a, w, bias, z], (m, 96), np.float16)


@gpu
def test_prepare_refuses_what_supports_cannot_see(cusparselt):
    rng = np.random.default_rng(6)
    dense = rand(rng, (64, 32), "fp16")
    lay = sparse(layer("MatMul", ["a", "w"], "fp16"))
    with pytest.raises(ValueError, match="matmul_test.*not 2:4 along K"):
        _tactic().prepare(lay, {"w": dense})
    with pytest.raises(ValueError, match="multiples of 16"):
        _tactic().prepare(lay, {"w": sparse_weight(rng, 40, 32)})
    with pytest.raises(ValueError, match="constant 2-D"):
        _tactic().prepare(lay, {})


def test_supports_only_sparse_fp16_gemms():
    tactic = _tactic()
    lay = sparse(fused(["a", "w", "bias"], "fp16", epilogue_bias=1, activation="Relu"))
    assert tactic.supports(lay, "fp16")
    assert not tactic.supports(lay, "fp32") and not tactic.supports(lay, "tf32")
    lay.sparse = False                                              # a dense weight, or sparsity="disable"
    assert not tactic.supports(lay, "fp16")
    assert not tactic.supports(sparse(layer("Gemm", ["a", "w"], "fp16", {"transA": 1})), "fp16")
    odd_n = sparse(layer("MatMul", ["a", "w"], "fp16"))
    odd_n.output_shapes = [(64, 40)]
    assert not tactic.supports(odd_n, "fp16")
    fp32_out = sparse(layer("MatMul", ["a", "w"], "fp16"))
    fp32_out.output_dtypes = ["float32"]
    assert not tactic.supports(fp32_out, "fp16")
    assert not tactic.supports(sparse(layer("Conv", ["x", "w"], "fp16")), "fp16")



def test_only_the_checked_releases_pass_the_gate(monkeypatch):
    from workbench.backends.cuda.tactics import cusparselt_binding as binding
    monkeypatch.delenv(binding.ANY_VERSION_ENV, raising=False)
    for found in [(0, 8, 0), (0, 8, 4), (0, 10, 0), (0, 10, 1)]:
        assert binding.version_supported(found) == (True, "")
    for found in [(0, 7, 1), (0, 9, 0), (0, 11, 0), (1, 0, 0)]:
        ok, why = binding.version_supported(found)
        assert not ok and ".".join(map(str, found)) in why and "0.8.x, 0.10.x" in why
    monkeypatch.setenv(binding.ANY_VERSION_ENV, "1")
    ok, why = binding.version_supported((0, 9, 0))
    assert ok and binding.ANY_VERSION_ENV in why


def test_an_unchecked_release_is_unavailable_before_any_handle(monkeypatch):
    """The gate reads the version with cusparseLtGetProperty and refuses before cusparseLtInit."""
    from workbench.backends.cuda.tactics import cusparselt_binding as binding
    monkeypatch.delenv(binding.ANY_VERSION_ENV, raising=False)
    monkeypatch.setattr(binding, "_loaded", lambda: (None, "/somewhere/libcusparseLt.so.0"))
    monkeypatch.setattr(binding, "library_version", lambda: (0, 9, 0))
    monkeypatch.setattr(binding, "handle", lambda: pytest.fail("a handle was made for an unchecked release"))
    binding._availability.cache_clear()
    try:
        assert not binding.available()
        assert "0.9.0" in binding.why_unavailable() and "/somewhere/libcusparseLt.so.0" in binding.why_unavailable()
    finally:
        binding._availability.cache_clear()



def test_one_handle_per_thread(monkeypatch):
    """cuSPARSELt wants a handle per thread; each is made once and kept for good."""
    import threading
    import types

    from workbench.backends.cuda import device
    from workbench.backends.cuda.tactics import cusparselt_binding as binding
    made = []
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0)))
    monkeypatch.setattr(device, "cupy", lambda: fake_cupy)
    monkeypatch.setattr(binding, "library_version", lambda: (0, 8, 0))
    monkeypatch.setattr(binding, "_call", lambda name, *args: made.append((name, args[0])))
    monkeypatch.setattr(binding, "_local", threading.local())
    monkeypatch.setattr(binding, "_every_handle", [])
    here = binding.handle()
    assert binding.handle() == here and made == [("cusparseLtInit", here)]
    there = []
    worker = threading.Thread(target=lambda: there.append(binding.handle()))
    worker.start()
    worker.join()
    assert there[0] != here and len(made) == 2 and len(binding._every_handle) == 2

def test_layout_and_search_come_from_the_environment(monkeypatch):
    from workbench.backends.cuda.tactics import sparse_gemm
    monkeypatch.delenv(sparse_gemm.LAYOUT_ENV, raising=False)
    monkeypatch.delenv(sparse_gemm.SEARCH_ENV, raising=False)
    assert sparse_gemm.configured() == sparse_gemm.Config("row", "timed")
    monkeypatch.setenv(sparse_gemm.LAYOUT_ENV, "col")
    monkeypatch.setenv(sparse_gemm.SEARCH_ENV, "library")
    assert sparse_gemm.configured() == sparse_gemm.Config("col", "library")
    monkeypatch.setenv(sparse_gemm.SEARCH_ENV, "sometimes")
    with pytest.raises(ValueError, match="sometimes"):
        sparse_gemm.configured()


def test_self_test_reads_what_the_subprocess_left(monkeypatch):
    """A subprocess that died names its last step; one that finished gives its verdict."""
    from workbench.backends.cuda.tactics import sparse_gemm, sparse_gemm_check
    config = sparse_gemm.Config("col", "library")
    died = subprocess.CompletedProcess([], -4, "", "step: plan (cusparseLtMatmulPlanInit)\n"
                                       "step: search (cusparseLtMatmulSearch)\nIllegal instruction\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: died)
    ok, what = sparse_gemm_check.self_test(config)
    assert not ok and "search (cusparseLtMatmulSearch)" in what and "exit -4" in what
    record = {"ok": False, "steps": ["search (cusparseLtMatmulSearch)"],
              "error": "CUDARuntimeError: cudaErrorIllegalInstruction"}
    failed = subprocess.CompletedProcess([], 1, "noise\nWB_SELF_TEST " + json.dumps(record), "")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    ok, what = sparse_gemm_check.self_test(config)
    assert not ok and what.startswith("CUDARuntimeError: cudaErrorIllegalInstruction") and "search" in what
    record = {"ok": True, "steps": [], "rel_l2": 1e-4, "config_id": 2}
    passed = subprocess.CompletedProcess([], 0, "WB_SELF_TEST " + json.dumps(record), "")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: passed)
    assert sparse_gemm_check.self_test(config)[0]


def test_the_first_configuration_that_passes_is_used(monkeypatch):
    from workbench.backends.cuda.tactics import sparse_gemm, sparse_gemm_check
    Config = sparse_gemm.Config
    for name in (sparse_gemm.LAYOUT_ENV, sparse_gemm.SELF_TEST_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(sparse_gemm.SEARCH_ENV, "library")     # the default is timed; library falls back to off
    tried = []

    def fake(config, device=0):
        tried.append(config)
        return config.search == "off", "fine" if config.search == "off" else "illegal instruction in search"
    monkeypatch.setattr(sparse_gemm_check, "self_test", fake)
    assert sparse_gemm_check._settle(0) == Config("row", "off") and tried == [Config("row", "library"), Config("row", "off")]
    monkeypatch.setattr(sparse_gemm_check, "self_test", lambda config, device=0: (False, f"{config} broke"))
    why = sparse_gemm_check._settle(0)
    assert isinstance(why, str) and "stays off" in why
    assert all(f"{c} broke" in why for c in (Config("row", "library"), Config("row", "off"), Config("col", "library"),
                                             Config("col", "off")))
    monkeypatch.setenv(sparse_gemm.SELF_TEST_ENV, "0")
    assert sparse_gemm_check._settle(0) == Config("row", "library")

def _matmul_model(weight: np.ndarray, m: int = 64):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    k, n = weight.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"], name="fc"),
             helper.make_node("Add", ["t", "b"], ["u"], name="fc_bias"),
             helper.make_node("Relu", ["u"], ["y"], name="fc_relu")]
    graph = helper.make_graph(nodes, "sparse_fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(weight.astype(np.float32), "w"),
                               numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _cuda_build(graph, sparsity: str):
    import workbench as wb
    from workbench.backends import tactic_sources
    assert "cusparselt" in tactic_sources("cuda"), (
        "cuSPARSELt is available but the 'cusparselt' source is not registered: add it to SOURCES in "
        "workbench/backends/cuda/tactic.py")
    return wb.build(graph, wb.BuilderConfig(backend="cuda", precision="fp16", sparsity=sparsity, builder_level=2))


@gpu
def test_whole_build_offers_the_sparse_tactic_and_matches_the_cpu_engine(cusparselt):
    import workbench as wb
    rng = np.random.default_rng(8)
    graph, _ = wb.optimize(wb.load(_matmul_model(rng.standard_normal((256, 128)).astype(np.float32) * 0.1)))
    pruned, report = wb.prune_2to4(graph)
    assert report["pruned"].all()
    engine = _cuda_build(pruned, "enable")
    log = engine.build_log
    rows = log[log["candidates"].apply(lambda names: SPARSE in names)]
    assert len(rows) == 1, f"{SPARSE} is a candidate of no layer:\n{log[['layer', 'op', 'candidates']]}"
    row = rows.iloc[0]
    assert SPARSE not in row["rejected"], f"{SPARSE} was refused: {row['rejected'][SPARSE]}"
    assert SPARSE in row["times_ms"] or row["cached"], row
    x = rng.standard_normal((64, 256)).astype(np.float32)
    cpu = wb.build(pruned, wb.BuilderConfig(backend="cpu", precision="fp16", sparsity="enable"))
    want = cpu.create_context().run({"x": x})["y"]
    got = engine.create_context().run({"x": x})["y"]
    err = float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want.astype(np.float64)))
    assert err <= 1e-2, f"GPU engine (GEMM tactic {row['choice']}) differs from the CPU engine: rel L2 {err:.3g}"


@gpu
def test_a_dense_weight_never_gets_the_sparse_tactic(cusparselt):
    import workbench as wb
    rng = np.random.default_rng(9)
    graph, _ = wb.optimize(wb.load(_matmul_model(rng.standard_normal((256, 128)).astype(np.float32))))
    log = _cuda_build(graph, "enable").build_log
    assert not log["candidates"].apply(lambda names: SPARSE in names).any()
