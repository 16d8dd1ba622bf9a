"""cusparselt.gemm_2to4: a GEMM whose constant weight is 2:4 structured along K, on the sparse tensor
cores through cuSPARSELt (tactics/cusparselt_binding.py): half the multiply-adds of the dense GEMM.

It competes only for fp16 layers the builder marked `layer.sparse` (BuilderConfig(sparsity="enable"
or "force") and the weight really is 2:4), with fp32 accumulation (CUSPARSE_COMPUTE_32F).

Row-major Y[M, N] = X[M, K] @ W[K, N] is D = op(A) @ op(B) with the weight the structured operand A,
W^T kept [N, K] row-major (groups of 4 contiguous along K), X and Y as they are. Layout "row" (the
default) describes those bytes as PyTorch's _cslt_sparse_mm does (transpose_result=True): A row-major
N x K with opA = N, B = X row-major M x K with opB = T, C = D column-major N x M (= Y). Layout "col"
describes the same bytes all column-major (A K x N with opA = T, B K x M with opB = N). Activations
are never copied or transposed, and cuSPARSELt's bias (one value per row of D) is Y's column bias.

Before its first prepare in a process the tactic runs itself once in a subprocess (`self_test`: one
small FusedGemm, bias and ReLU fused, compared with numpy): a cuSPARSELt kernel that faults (an illegal
instruction poisons the CUDA context of the whole process) then costs that subprocess only. Tried in
turn: the configured layout and search ($WB_CUSPARSELT_LAYOUT row|col, $WB_CUSPARSELT_SEARCH
timed|library|off), the same without search, the other layout; the first that passes is used for the
process, and if none does the tactic refuses to prepare (the autotuner rejects it, saying why).
$WB_CUSPARSELT_SELF_TEST=0 skips it (tactics/sparse_gemm_check.py). bench/diagnose_cusparselt.py runs
every call as its own step. The default search is "timed", ours: on the H100 with cuSPARSELt 0.8.0,
algorithm ids 36-40 fault with an illegal instruction, and cusparseLtMatmulSearch (PyTorch's too) with
them, while the default id runs at 0.6x of the dense GEMM and id 6 at 1.3x. So the ids that run at all
are found once per machine by a subprocess sweep (sparse_gemm_check.safe_algorithm_ids, cached in
~/.cache/workbench), and each plan times those and keeps the fastest. $WB_CUSPARSELT_SEARCH=library
uses cuSPARSELt's own search where the library is sound; off keeps its default kernel.

Once per context (`prepare`): check the 2:4 pattern, upload W^T, check it again on the device as
cuSPARSELt sees it (cusparseLtSpMMAPruneCheck2), compress it (cusparseLtSpMMACompress2, which does
not depend on M). Once per M (in `prepare` when the output shape is static, else on the first run,
a warm-up outside capture): descriptors, plan, the search (timed: the fastest safe id; library:
cusparseLtMatmulSearch with a generous scratch workspace), workspace. fp16 dense operands need M a
multiple of 8; another M runs through two staging buffers made with the plan (padding rows zero).
`run`: one cusparseLtMatmul on the given stream, bias fused, ReLU fused when there is no residual; a
residual or another activation goes to the shared epilogue kernel afterwards.
Nothing is allocated in `run`. Registers nothing when cuSPARSELt (a supported release) or a GPU is missing.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
from typing import Any, Callable, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import SOURCES, CudaTactic
from workbench.backends.cuda.tactics import cusparselt_binding as binding
from workbench.backends.cuda.tactics.gemm_common import (NO_ACTIVATION, GemmSpec, apply_epilogue, gemm_spec,
                                                          is_gemm_layer)
from workbench.quant.sparsity import is_2to4, prune_2to4

log = logging.getLogger(__name__)

SPARSE_MULTIPLE = 16            # fp16 structured matrix: rows, cols and ld multiples of 16 (cuSPARSELt docs)
DENSE_MULTIPLES = (8, 16)       # fp16 dense matrices: multiples of 8 documented; 16 tried if 8 is refused
# activation code (cuda/epilogue.py) -> cuSPARSELt's flag. Only ReLU: cuSPARSELt 0.8.0 on the H100 refuses
# its GELU flag on a plan with a bias (INVALID_VALUE), so GELU goes to the shared epilogue kernel
FUSED_ACTIVATIONS = {1: binding.ACTIVATION_RELU}
WORKSPACE_ESTIMATE = 8 << 20    # what `workspace_bytes` declares before a plan exists (cuSPARSELt's is small)
SEARCH_WORKSPACE = 32 << 20     # scratch for cusparseLtMatmulSearch: it takes no size, and its candidates
                                # (split-K, stream-K) may want more than the default algorithm
LAYOUTS, SEARCH_MODES = ("row", "col"), ("timed", "library", "off")
TIMED_REPEATS = 3               # runs per algorithm id in the "timed" search (after one warm-up)
LAYOUT_ENV, SEARCH_ENV, SELF_TEST_ENV = "WB_CUSPARSELT_LAYOUT", "WB_CUSPARSELT_SEARCH", "WB_CUSPARSELT_SELF_TEST"
SELF_TEST_TIMEOUT_S = 90
_FP16 = np.dtype(np.float16)
Step = Callable[[str, Callable[[], Any]], Any]


def _direct(name: str, fn: Callable[[], Any]) -> Any:
    return fn()


@dataclasses.dataclass(frozen=True)
class Config:
    layout: str = "row"
    search: str = "timed"
    alg_id: int | None = None   # a fixed ALG_CONFIG_ID (no search); the diagnostic sweeps them

    def __str__(self) -> str:
        alg = "" if self.alg_id is None else f", config id {self.alg_id}"
        return f"layout {self.layout}, search {self.search}{alg}"


def configured() -> Config:
    """The configuration asked for ($WB_CUSPARSELT_LAYOUT, $WB_CUSPARSELT_SEARCH; defaults row, library)."""
    layout, search = os.environ.get(LAYOUT_ENV, "row"), os.environ.get(SEARCH_ENV, "timed")
    if layout not in LAYOUTS or search not in SEARCH_MODES:
        raise ValueError(f"{LAYOUT_ENV}={layout!r} / {SEARCH_ENV}={search!r}: expected one of {LAYOUTS} / "
                         f"{SEARCH_MODES}")
    return Config(layout, search)


@dataclasses.dataclass
class _Plan:
    """cuSPARSELt plan (keeping its descriptors), workspace and staging buffers for one M."""
    rows: int                   # M rounded up to what cuSPARSELt takes
    plan: Any
    workspace: Any
    fused_activation: bool
    staged_input: Any           # [rows, K], rows past M zero; None when M needs no padding
    staged_output: Any          # [rows, N] or None
    config_id: int              # the kernel configuration after cusparseLtMatmulSearch (-1: unknown)
    max_config_id: int          # CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID of the plan (-1: unknown)


@dataclasses.dataclass
class _State:
    layer: str
    spec: GemmSpec
    config: Config
    n: int
    k: int
    weight: Any                 # binding.Opaque: the structured descriptor of W^T
    op_a: int
    compressed: Any             # device bytes of the compressed W^T
    bias: Any                   # device [N] float16 (Gemm's beta folded in) or None
    alpha: np.ndarray           # host float32 scalars the calls read
    beta: np.ndarray
    plans: dict                 # M -> _Plan
    streams: dict               # stream pointer -> ctypes cudaStream_t[1]
    candidate_ids: tuple = ()   # algorithm ids the "timed" search may run (proven not to fault here)


class CusparseLtGemm(CudaTactic):
    name = "cusparselt.gemm_2to4"
    source = "cusparselt"

    def __init__(self, config: Config | None = None):
        self.config = config    # None: the process's configuration that passed the self-test

    def supports(self, layer: Layer, precision: str) -> bool:
        if precision != "fp16" or not getattr(layer, "sparse", False) or not is_gemm_layer(layer):
            return False
        try:
            spec = gemm_spec(layer)
        except ValueError:                      # an activation with no GPU epilogue
            return False
        shape = layer.output_shapes[0] if layer.output_shapes else None
        if spec.trans_a or (shape and isinstance(shape[-1], int) and shape[-1] % SPARSE_MULTIPLE):
            return False
        declared = layer.output_dtypes[0] if layer.output_dtypes else ""
        return declared in ("", "float16")      # K and the weight itself are checked in prepare

    def workspace_bytes(self, layer: Layer) -> int:
        return WORKSPACE_ESTIMATE

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray], step: Step = _direct) -> _State:
        """`step(name, fn)` wraps each cuSPARSELt call (the self-test and the diagnostic report through it)."""
        cp = cupy()
        spec = gemm_spec(layer)
        w_name = layer.inputs[1]
        if w_name not in weights or np.ndim(weights[w_name]) != 2:
            raise ValueError(f"{self.name}: layer {layer.name!r}: the weight {w_name!r} must be a constant 2-D "
                             "initializer (it is compressed at build time)")
        w = np.asarray(weights[w_name])
        w_kn = w.T if spec.trans_b else w
        k, n = w_kn.shape
        if k % SPARSE_MULTIPLE or n % SPARSE_MULTIPLE:
            raise ValueError(f"{self.name}: layer {layer.name!r}: K={k} and N={n} must be multiples of "
                             f"{SPARSE_MULTIPLE} for cuSPARSELt's fp16 structured operand")
        if not is_2to4(w_kn, axis=0):
            raise ValueError(f"{self.name}: layer {layer.name!r}: the weight {w_name!r} is not 2:4 along K "
                             "(a group of 4 along the reduction dim has more than 2 nonzeros)")
        candidates: tuple = ()
        if self.config is None:
            from workbench.backends.cuda.tactics.sparse_gemm_check import safe_algorithm_ids, working_config
        config = self.config or working_config()
        if self.config is None and config.search == "timed":
            candidates = safe_algorithm_ids(config)
        step("handle (cusparseLtInit)", binding.handle)
        dense = step("upload W^T", lambda: cp.asarray(np.ascontiguousarray(w_kn.T, dtype=np.float16)))
        weight, op_a, compressed = _compress(config.layout, n, k, dense, layer.name, step)
        del dense
        state = _State(layer.name, spec, config, n, k, weight, op_a, compressed,
                       _bias(layer, spec, weights, n, self.name), np.array(spec.alpha, np.float32),
                       np.array(0.0, np.float32), {}, {}, candidates)
        shape = layer.output_shapes[0] if layer.output_shapes else None
        if shape and all(isinstance(d, int) for d in shape) and int(np.prod(shape[:-1])) > 0:
            self._plan(state, int(np.prod(shape[:-1])), None, None, cp.cuda.get_current_stream(), step)
        return state

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, out = inputs[0], outputs[0]
        z = inputs[state.spec.z_index] if state.spec.z_index is not None else None
        n, k = state.n, state.k
        if x.dtype != _FP16 or x.shape[-1] != k or not x.flags.c_contiguous:
            raise ValueError(f"{self.name}: layer {state.layer!r}: X must be C-contiguous float16 [..., {k}], "
                             f"got {x.dtype} {x.shape}")
        m = x.size // k
        if out.dtype != _FP16 or out.shape[-1] != n or out.size != m * n or not out.flags.c_contiguous:
            raise ValueError(f"{self.name}: layer {state.layer!r}: the output {out.dtype} {out.shape} is not a "
                             f"C-contiguous float16 [{m}, {n}]")
        if m == 0:
            return outputs
        cp = cupy()
        stream = stream if stream is not None else cp.cuda.get_current_stream()
        plan = state.plans.get(m) or self._plan(state, m, x, out, stream)
        x_ptr, y_ptr = x.data.ptr, out.data.ptr
        if plan.staged_input is not None:
            cp.cuda.runtime.memcpyAsync(plan.staged_input.data.ptr, x_ptr, x.nbytes,
                                        cp.cuda.runtime.memcpyDeviceToDevice, stream.ptr)
            x_ptr, y_ptr = plan.staged_input.data.ptr, plan.staged_output.data.ptr
        elif x_ptr % 16 or y_ptr % 16:
            raise ValueError(f"{self.name}: layer {state.layer!r}: X and Y must be 16-byte aligned")
        binding.matmul(plan.plan, state.alpha.ctypes.data, state.compressed.data.ptr, x_ptr, state.beta.ctypes.data,
                       y_ptr, y_ptr, plan.workspace.data.ptr, _streams(state, stream.ptr), 1)
        if plan.staged_output is not None:
            cp.cuda.runtime.memcpyAsync(out.data.ptr, y_ptr, out.nbytes, cp.cuda.runtime.memcpyDeviceToDevice,
                                        stream.ptr)
        activation = NO_ACTIVATION if plan.fused_activation else state.spec.activation
        if z is not None or activation[0]:
            with stream:
                apply_epilogue(out, None, z, activation)
        return outputs

    def _plan(self, state: _State, m: int, x, out, stream, step: Step = _direct) -> _Plan:
        """Descriptors, plan, algorithm search (on `stream`, with `x` and `out` when made in run, else
        with scratch buffers) and workspace for M rows."""
        cp = cupy()
        error = None
        for multiple in DENSE_MULTIPLES:
            rows = -(-m // multiple) * multiple
            try:
                matmul_plan, fused = _make_plan(state, rows, step)
                break
            except binding.CusparseLtError as exc:
                error = exc
        else:
            raise RuntimeError(f"{self.name}: layer {state.layer!r}: cuSPARSELt has no plan for M={m} N={state.n} "
                               f"K={state.k} fp16: {error}") from error
        staged = rows != m
        staged_input = cp.zeros((rows, state.k), _FP16) if staged else None
        staged_output = cp.empty((rows, state.n), _FP16) if staged else None
        needed = step("workspace size (cusparseLtMatmulGetWorkspace)", lambda: binding.workspace_size(matmul_plan))
        if state.config.search == "library" and state.config.alg_id is None:
            search_in = staged_input if staged else x if x is not None else cp.zeros((rows, state.k), _FP16)
            search_out = staged_output if staged else out if out is not None else cp.empty((rows, state.n), _FP16)
            scratch = cp.empty(max(needed, SEARCH_WORKSPACE), cp.uint8)
            _search(state, matmul_plan, search_in, search_out, scratch, stream, step)
            needed = step("workspace size after search", lambda: binding.workspace_size(matmul_plan))
            del scratch
        workspace = cp.empty(max(needed, 1), cp.uint8)
        if state.candidate_ids and state.config.alg_id is None:
            matmul_plan, workspace = _fastest(state, rows, (matmul_plan, workspace), staged_input, staged_output,
                                              x, out, stream)
        selection = matmul_plan.keep[1]
        ids = []
        for attribute in (binding.ALG_CONFIG_ID, binding.ALG_CONFIG_MAX_ID):
            try:
                ids.append(binding.alg_attribute(selection, attribute))
            except binding.CusparseLtError:
                ids.append(-1)
        stream.synchronize()
        plan = _Plan(rows, matmul_plan, workspace, fused, staged_input, staged_output, *ids)
        state.plans[m] = plan
        return plan


def _fastest(state: _State, rows: int, default, staged_x, staged_y, x, y, stream):
    """The "timed" search: (plan, workspace) of the fastest of the default and each candidate id, each
    timed TIMED_REPEATS times with CUDA events on the real (or scratch) buffers, outside any capture."""
    cp = cupy()
    x = staged_x if staged_x is not None else x if x is not None else cp.zeros((rows, state.k), _FP16)
    y = staged_y if staged_y is not None else y if y is not None else cp.empty((rows, state.n), _FP16)
    start, stop = cp.cuda.Event(), cp.cuda.Event()

    def timed(plan, workspace) -> float:
        call = lambda: binding.matmul(plan, state.alpha.ctypes.data, state.compressed.data.ptr, x.data.ptr,  # noqa
                                      state.beta.ctypes.data, y.data.ptr, y.data.ptr, workspace.data.ptr,
                                      _streams(state, stream.ptr), 1)
        call()
        start.record(stream)
        for _ in range(TIMED_REPEATS):
            call()
        stop.record(stream)
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop)
    # each id gets its own selection and plan: re-pointing one selection under a live plan crashed 0.8.0
    best, best_ms = default, timed(*default)
    for alg in state.candidate_ids:
        try:
            plan, _ = _make_plan(state, rows, alg_id=alg)
        except binding.CusparseLtError:         # an id past this problem's ALG_CONFIG_MAX_ID
            continue
        workspace = cp.empty(max(binding.workspace_size(plan), 1), cp.uint8)
        ms = timed(plan, workspace)
        if ms < best_ms:
            best, best_ms = (plan, workspace), ms
    return best


def _search(state: _State, matmul_plan, x, y, scratch, stream, step: Step) -> None:
    """cusparseLtMatmulSearch into the plan; a status error keeps the default algorithm, unless the device
    reports a fault (then the CUDA context is lost, and the error says so)."""
    try:
        step("search (cusparseLtMatmulSearch)", lambda: binding.matmul(
            matmul_plan, state.alpha.ctypes.data, state.compressed.data.ptr, x.data.ptr, state.beta.ctypes.data,
            y.data.ptr, y.data.ptr, scratch.data.ptr, _streams(state, stream.ptr), 1, search=True))
    except binding.CusparseLtError as exc:
        try:
            stream.synchronize()
        except Exception as fault:
            raise RuntimeError(f"cusparselt.gemm_2to4: layer {state.layer!r}: cusparseLtMatmulSearch failed ({exc}) "
                               f"and the device reports {type(fault).__name__}: {fault}") from fault
        log.warning("cusparselt.gemm_2to4: layer %r: cusparseLtMatmulSearch failed (%s); using the default "
                    "algorithm", state.layer, exc)


def weight_descriptor(layout: str, n: int, k: int):
    """(structured descriptor, opA) of W^T, stored [N, K] row-major."""
    if layout == "row":
        return binding.matrix_descriptor(n, k, k, binding.CUDA_R_16F, structured=True,
                                         order=binding.ORDER_ROW), binding.OP_N
    return binding.matrix_descriptor(k, n, k, binding.CUDA_R_16F, structured=True,
                                     order=binding.ORDER_COL), binding.OP_T


def dense_descriptors(layout: str, n: int, k: int, rows: int):
    """(descriptor of X [rows, K] row-major, opB, descriptor of Y [rows, N] row-major = column-major N x rows)."""
    if layout == "row":
        x, op_b = binding.matrix_descriptor(rows, k, k, binding.CUDA_R_16F, order=binding.ORDER_ROW), binding.OP_T
    else:
        x, op_b = binding.matrix_descriptor(k, rows, k, binding.CUDA_R_16F, order=binding.ORDER_COL), binding.OP_N
    return x, op_b, binding.matrix_descriptor(n, rows, n, binding.CUDA_R_16F, order=binding.ORDER_COL)


def _make_plan(state: _State, rows: int, step: Step = _direct, alg_id: int | None = None):
    """(plan, whether the activation is fused) for `rows` rows of X and Y (M, padded), with the algorithm
    id `alg_id` (else the configuration's, else cuSPARSELt's default)."""
    alg_id = state.config.alg_id if alg_id is None else alg_id
    x, op_b, y = step("dense descriptors (cusparseLtDenseDescriptorInit)",
                      lambda: dense_descriptors(state.config.layout, state.n, state.k, rows))
    descriptor = step("matmul descriptor (cusparseLtMatmulDescriptorInit, COMPUTE_32F)", lambda: (
        binding.matmul_descriptor(state.op_a, op_b, state.weight, x, y, y, binding.COMPUTE_32F)))
    if state.bias is not None:
        step("bias pointer (CUSPARSELT_MATMUL_BIAS_POINTER)", lambda: binding.set_matmul_attribute(
            descriptor, binding.BIAS_POINTER, ctypes.c_void_p(state.bias.data.ptr)))
    code = state.spec.activation[0]
    fused = state.spec.z_index is None and code in FUSED_ACTIVATIONS
    if fused:
        step("activation flag (CUSPARSELT_MATMUL_ACTIVATION_*)", lambda: binding.set_matmul_attribute(
            descriptor, FUSED_ACTIVATIONS[code], ctypes.c_int(1)))
    selection = step("algorithm selection (cusparseLtMatmulAlgSelectionInit)",
                     lambda: binding.alg_selection(descriptor))
    if alg_id is not None:
        step(f"config id {alg_id} (cusparseLtMatmulAlgSetAttribute)", lambda: binding.set_alg_attribute(
            selection, binding.ALG_CONFIG_ID, alg_id))
    return step("plan (cusparseLtMatmulPlanInit)", lambda: binding.plan(descriptor, selection)), fused


def _compress(layout: str, n: int, k: int, dense, layer_name: str, step: Step = _direct):
    """(descriptor, opA, compressed bytes) of W^T: its pattern checked on the device as cuSPARSELt reads it,
    then compressed once."""
    cp = cupy()
    stream = cp.cuda.get_current_stream()
    weight, op = step("weight descriptor (cusparseLtStructuredDescriptorInit)", lambda: weight_descriptor(layout, n, k))
    invalid = cp.zeros(1, cp.int32)             # device int: the d_valid of cusparseLtSpMMAPruneCheck2
    step("prune check (cusparseLtSpMMAPruneCheck2)",
         lambda: binding.prune_check(weight, dense.data.ptr, invalid.data.ptr, stream.ptr, op))
    size, scratch_bytes = step("compressed size (cusparseLtSpMMACompressedSize2)",
                               lambda: binding.compressed_size(weight))
    compressed, scratch = cp.empty(max(size, 1), cp.uint8), cp.empty(max(scratch_bytes, 1), cp.uint8)
    step("compress (cusparseLtSpMMACompress2)", lambda: binding.compress(
        weight, dense.data.ptr, compressed.data.ptr, scratch.data.ptr, stream.ptr, op))
    stream.synchronize()
    if int(invalid.get()[0]) != 0:
        raise ValueError(f"cusparselt.gemm_2to4: layer {layer_name!r}: cusparseLtSpMMAPruneCheck2 finds the weight "
                         "not 2:4 in the layout it was given, though it is 2:4 along K on the host")
    return weight, op, compressed


def _bias(layer: Layer, spec: GemmSpec, weights, n: int, tactic: str):
    """The fused bias: a constant of N values, scaled by Gemm's beta, in the output dtype (float16)."""
    if spec.c_index is None:
        return None
    c = weights.get(layer.inputs[spec.c_index])
    if c is None or np.size(c) != n or (np.ndim(c) == 2 and np.shape(c)[0] != 1) or np.ndim(c) > 2:
        raise ValueError(f"{tactic}: layer {layer.name!r}: C ({layer.inputs[spec.c_index]!r}) must be a constant "
                         f"bias of N={n} values")
    scaled = np.asarray(c, np.float32).reshape(n) * np.float32(spec.bias_scale)
    return cupy().asarray(scaled.astype(np.float16))


def _streams(state: _State, stream_ptr: int) -> int:
    """Address of a cudaStream_t[1] holding `stream_ptr` (made once per stream: a host array)."""
    array = state.streams.get(stream_ptr)
    if array is None:
        array = state.streams[stream_ptr] = (ctypes.c_void_p * 1)(stream_ptr)
    return ctypes.addressof(array)


if binding.available():
    if CusparseLtGemm.source in SOURCES:
        register(CusparseLtGemm())
    else:
        log.warning("cuSPARSELt is available but %r is not among the CUDA tactic sources %s "
                    "(workbench/backends/cuda/tactic.py): cusparselt.gemm_2to4 is not registered",
                    CusparseLtGemm.source, SOURCES)
