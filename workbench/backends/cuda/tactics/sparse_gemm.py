"""cusparselt.gemm_2to4: a GEMM whose constant weight is 2:4 structured along K, on the sparse tensor
cores through cuSPARSELt (tactics/cusparselt_binding.py): half the multiply-adds of the dense GEMM.

It competes only for fp16 layers the builder marked `layer.sparse` (BuilderConfig(sparsity="enable"
or "force") and the weight really is 2:4), with fp32 accumulation (CUSPARSE_COMPUTE_32F).

Row-major on column-major cuSPARSELt, the weight being the structured operand A:
    Y[M, N] = X[M, K] @ W[K, N]   is   D[N, M] = op(A)[N, K] @ B[K, M]   (column-major)
    A = W^T kept as [N, K] row-major = column-major K x N (ld K) with opA = T: the "TN" layout, the
        groups of 4 contiguous along K (the layout PyTorch's semi-structured tensors use)
    B = X [M, K] row-major = column-major K x M (ld K); C = D = Y [M, N] row-major = column-major N x M
so activations are never copied or transposed, and cuSPARSELt's bias (one value per row of D) is
the per-output-column bias of Y.

Once per context (`prepare`): check the 2:4 pattern, upload W^T, check it again on the device as
cuSPARSELt sees it (cusparseLtSpMMAPruneCheck2), compress it (cusparseLtSpMMACompress2, which does
not depend on M). Once per M (in `prepare` when the output shape is static, else on the first run,
a warm-up outside capture): descriptors, plan, cusparseLtMatmulSearch (cuSPARSELt's own autotuning
over its kernels), workspace. fp16 dense operands need M a multiple of 8; another M runs through
two staging buffers made with the plan (padding rows zero), one device copy in and one out.
`run`: one cusparseLtMatmul on the given stream, bias fused, ReLU or GELU fused when there is no
residual; a residual or another activation goes to the shared epilogue kernel afterwards.
Nothing is allocated in `run`. Registers nothing when cuSPARSELt or a GPU is missing.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import SOURCES, CudaTactic
from workbench.backends.cuda.tactics import cusparselt_binding as binding
from workbench.backends.cuda.tactics.gemm_common import (NO_ACTIVATION, GemmSpec, apply_epilogue, gemm_spec,
                                                          is_gemm_layer)
from workbench.quant.sparsity import is_2to4

log = logging.getLogger(__name__)

SPARSE_MULTIPLE = 16            # fp16 structured matrix: rows, cols and ld multiples of 16 (cuSPARSELt docs)
DENSE_MULTIPLES = (8, 16)       # fp16 dense matrices: multiples of 8 documented; 16 tried if 8 is refused
# activation code (cuda/epilogue.py) -> cuSPARSELt's flag: ReLU, erf-GELU and tanh-GELU. cuSPARSELt has one
# GELU; the two forms differ by at most 4.7e-4, under half an fp16 ulp at 1.0 (as nvmath_gemm.py argues)
FUSED_ACTIVATIONS = {1: binding.ACTIVATION_RELU, 8: binding.ACTIVATION_GELU, 9: binding.ACTIVATION_GELU}
WORKSPACE_ESTIMATE = 8 << 20    # what `workspace_bytes` declares before a plan exists (cuSPARSELt's is small)
_FP16 = np.dtype(np.float16)


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


@dataclasses.dataclass
class _State:
    layer: str
    spec: GemmSpec
    n: int
    k: int
    weight: Any                 # binding.Opaque: the structured descriptor of W^T
    compressed: Any             # device bytes of the compressed W^T
    bias: Any                   # device [N] float16 (Gemm's beta folded in) or None
    alpha: np.ndarray           # host float32 scalars the calls read
    beta: np.ndarray
    plans: dict                 # M -> _Plan
    streams: dict               # stream pointer -> ctypes cudaStream_t[1]


class CusparseLtGemm(CudaTactic):
    name = "cusparselt.gemm_2to4"
    source = "cusparselt"

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

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
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
        weight = binding.matrix_descriptor(k, n, k, binding.CUDA_R_16F, structured=True)       # W^T: column-major K x N
        compressed = _compress(weight, cp.asarray(np.ascontiguousarray(w_kn.T, dtype=np.float16)), layer.name)
        state = _State(layer.name, spec, n, k, weight, compressed, _bias(layer, spec, weights, n, self.name),
                       np.array(spec.alpha, np.float32), np.array(0.0, np.float32), {}, {})
        shape = layer.output_shapes[0] if layer.output_shapes else None
        if shape and all(isinstance(d, int) for d in shape) and int(np.prod(shape[:-1])) > 0:
            self._plan(state, int(np.prod(shape[:-1])), None, None, cp.cuda.get_current_stream())
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

    def _plan(self, state: _State, m: int, x, out, stream) -> _Plan:
        """Descriptors, plan, algorithm search (on `stream`, with `x` and `out` when made in run, else
        with scratch buffers) and workspace for M rows."""
        cp = cupy()
        error = None
        for multiple in DENSE_MULTIPLES:
            rows = -(-m // multiple) * multiple
            try:
                matmul_plan, fused = _make_plan(state, rows)
                break
            except binding.CusparseLtError as exc:
                error = exc
        else:
            raise RuntimeError(f"{self.name}: layer {state.layer!r}: cuSPARSELt has no plan for M={m} N={state.n} "
                               f"K={state.k} fp16: {error}") from error
        staged = rows != m
        staged_input = cp.zeros((rows, state.k), _FP16) if staged else None
        staged_output = cp.empty((rows, state.n), _FP16) if staged else None
        search_in = staged_input if staged else x if x is not None else cp.zeros((rows, state.k), _FP16)
        search_out = staged_output if staged else out if out is not None else cp.empty((rows, state.n), _FP16)
        workspace = cp.empty(max(binding.workspace_size(matmul_plan), 1), cp.uint8)
        try:
            binding.matmul(matmul_plan, state.alpha.ctypes.data, state.compressed.data.ptr, search_in.data.ptr,
                           state.beta.ctypes.data, search_out.data.ptr, search_out.data.ptr, workspace.data.ptr,
                           _streams(state, stream.ptr), 1, search=True)
        except binding.CusparseLtError as exc:        # the default algorithm still runs
            log.warning("%s: layer %r: cusparseLtMatmulSearch failed (%s); using the default algorithm",
                        self.name, state.layer, exc)
        try:
            config_id = binding.alg_attribute(matmul_plan.keep[1], binding.ALG_CONFIG_ID)
        except binding.CusparseLtError:
            config_id = -1
        needed = binding.workspace_size(matmul_plan)   # the chosen algorithm may want more than the default
        if needed > workspace.nbytes:
            workspace = cp.empty(needed, cp.uint8)
        stream.synchronize()
        plan = _Plan(rows, matmul_plan, workspace, fused, staged_input, staged_output, config_id)
        state.plans[m] = plan
        return plan


def _make_plan(state: _State, rows: int):
    """(plan, whether the activation is fused) for `rows` columns of B and D (M, padded)."""
    activations = binding.matrix_descriptor(state.k, rows, state.k, binding.CUDA_R_16F)     # X: column-major K x M
    output = binding.matrix_descriptor(state.n, rows, state.n, binding.CUDA_R_16F)          # Y: column-major N x M
    try:
        descriptor = binding.matmul_descriptor(binding.OP_T, binding.OP_N, state.weight, activations, output, output,
                                               binding.COMPUTE_32F)
    except binding.CusparseLtError as exc:
        log.warning("cusparselt: layer %r: fp32 accumulation refused (%s); accumulating with COMPUTE_16F",
                    state.layer, exc)
        descriptor = binding.matmul_descriptor(binding.OP_T, binding.OP_N, state.weight, activations, output, output,
                                               binding.COMPUTE_16F)
    if state.bias is not None:
        binding.set_matmul_attribute(descriptor, binding.BIAS_POINTER, ctypes.c_void_p(state.bias.data.ptr))
    code = state.spec.activation[0]
    fused = state.spec.z_index is None and code in FUSED_ACTIVATIONS
    if fused:
        binding.set_matmul_attribute(descriptor, FUSED_ACTIVATIONS[code], ctypes.c_int(1))
    return binding.plan(descriptor, binding.alg_selection(descriptor)), fused


def _compress(weight, dense, layer_name: str):
    """Check W^T's pattern on the device as cuSPARSELt reads it, then compress it once."""
    cp = cupy()
    stream = cp.cuda.get_current_stream()
    invalid = cp.zeros(1, cp.int32)
    binding.prune_check(weight, dense.data.ptr, invalid.data.ptr, stream.ptr, binding.OP_T)
    size, scratch_bytes = binding.compressed_size(weight)
    compressed, scratch = cp.empty(max(size, 1), cp.uint8), cp.empty(max(scratch_bytes, 1), cp.uint8)
    binding.compress(weight, dense.data.ptr, compressed.data.ptr, scratch.data.ptr, stream.ptr, binding.OP_T)
    stream.synchronize()
    if int(invalid.get()[0]) != 0:
        raise ValueError(f"cusparselt.gemm_2to4: layer {layer_name!r}: cusparseLtSpMMAPruneCheck2 finds the weight "
                         "not 2:4 in the layout it was given, though it is 2:4 along K on the host")
    return compressed


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
