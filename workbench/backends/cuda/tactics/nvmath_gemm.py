"""nvmath.gemm_lt: cuBLASLt through nvmath-python's low-level bindings, with bias and activation
fused into the GEMM by cuBLASLt's epilogues (BIAS, RELU_BIAS, GELU_BIAS) and the residual added
as cuBLASLt's C operand (D = act(alpha * A @ B + 1 * Z + bias)).

Why the bindings and not `nvmath.linalg.advanced.Matmul`: its `execute` returns a new array each
call, and a tactic's `run` may not allocate (it is captured into a CUDA graph). Here descriptors,
the algorithm (cuBLASLt's first heuristic pick) and the workspace are made once per M (the
batch), in `prepare` when the output shape is static, else on the first `run` (a warm-up).

Row-major on column-major cuBLASLt: D^T[N, M] = W[N, K]^T-op @ A^T, so the weight is stored
[N, K] (the "TN" layout) and cuBLASLt's bias, which runs along D's rows, is a per-output-column
bias of the row-major result. Registers nothing when nvmath-python is not installed.
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import DTYPES, CudaTactic
from workbench.backends.cuda.tactics.gemm_common import GemmSpec, gemm_spec, is_gemm_layer

try:
    import nvmath  # noqa: F401
except Exception:                           # not installed, or its CUDA libraries fail to load
    nvmath = None

# activation code (kernels/epilogue.cuh) -> cuBLASLt epilogue (without bias, with bias); GELU is the tanh form
_EPILOGUES = {0: ("DEFAULT", "BIAS"), 1: ("RELU", "RELU_BIAS"), 9: ("GELU", "GELU_BIAS")}
# The erf GELU (code 8) takes the tanh epilogue only for half outputs: the two forms differ by at most
# 4.7e-4, under half an fp16 ulp at 1.0, so the rounding of the output hides it (the oracle check still
# runs); in fp32 that would be a visible approximation, so fp32 erf GELU goes to the other tactics.
_HALF_ERF_GELU = 8
_HALF = ("fp16", "bf16")
_EPILOGUE_VALUES = {"DEFAULT": 1, "RELU": 2, "BIAS": 4, "RELU_BIAS": 6, "GELU": 32, "GELU_BIAS": 36}
_DESC_ATTRS = {"TRANSA": (3, np.int32), "TRANSB": (4, np.int32), "EPILOGUE": (7, np.uint32),
               "BIAS_POINTER": (8, np.uint64)}
_MAX_WORKSPACE_BYTES_ATTR = 1
_CUDA_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 2}
_COMPUTE = {"fp32": 68, "fp16": 68, "tf32": 77}             # CUBLAS_COMPUTE_32F, _32F_FAST_TF32
_CUDA_R_32F, _OP_N, _OP_T = 0, 0, 1
_HEURISTIC_BYTES, _WORKSPACE_OFFSET, _STATE_OFFSET = 96, 64, 72    # cublasLtMatmulHeuristicResult_t
_WORKSPACE_LIMIT = 8 << 20


def _lt():
    from nvmath.bindings import cublasLt
    return cublasLt


@functools.lru_cache(maxsize=None)
def _handle(device_id: int) -> int:
    return _lt().create()


@dataclasses.dataclass
class _Plan:
    """cuBLASLt descriptors, algorithm and workspace for one (M, output dtype)."""
    desc: int
    layouts: tuple                # (weight, activation, output)
    algo: np.ndarray              # the heuristic result buffer; the algorithm is its first 64 bytes
    workspace: Any
    workspace_bytes: int


@dataclasses.dataclass
class _State:
    spec: GemmSpec
    precision: str
    weight_t: Any                 # device [N, K], the layer's dtype
    bias_host: np.ndarray | None  # [N] float32, beta folded in
    biases: dict                  # output dtype -> device bias in that dtype (cuBLASLt's default bias type)
    plans: dict                   # (M, output dtype) -> _Plan
    n: int
    k: int
    alpha: np.ndarray
    beta: dict                    # with residual -> host scalar


class CublasLtGemm(CudaTactic):
    name = "nvmath.gemm_lt"
    source = "nvmath"

    def supports(self, layer: Layer, precision: str) -> bool:
        if precision not in DTYPES or not is_gemm_layer(layer):
            return False
        try:
            spec = gemm_spec(layer)
        except ValueError:
            return False
        code = spec.activation[0]
        return not spec.trans_a and (code in _EPILOGUES or (code == _HALF_ERF_GELU and precision in _HALF))

    def workspace_bytes(self, layer: Layer) -> int:
        return _WORKSPACE_LIMIT

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cp = cupy()
        spec = gemm_spec(layer)
        b_name = layer.inputs[1]
        if b_name not in weights or np.ndim(weights[b_name]) != 2:
            raise ValueError(f"{self.name}: layer {layer.name!r}: B ({b_name!r}) must be a constant 2-D weight")
        b = np.asarray(weights[b_name])
        weight_t = b if spec.trans_b else b.T
        n, k = weight_t.shape
        bias_host = None
        if spec.c_index is not None:
            c = weights.get(layer.inputs[spec.c_index])
            if c is None or np.asarray(c).size != n or (np.ndim(c) == 2 and np.shape(c)[0] != 1):
                raise ValueError(f"{self.name}: layer {layer.name!r}: C must be a constant bias of N={n} values")
            bias_host = np.asarray(c, np.float32).reshape(n) * np.float32(spec.bias_scale)
        dtype = DTYPES[layer.precision]
        state = _State(spec, layer.precision, cp.ascontiguousarray(cp.asarray(weight_t, dtype=dtype)), bias_host,
                       {}, {}, n, k, np.array(spec.alpha, np.float32),
                       {False: np.array(0.0, np.float32), True: np.array(1.0, np.float32)})
        shape = layer.output_shapes[0] if layer.output_shapes else None
        declared = layer.output_dtypes[0] if layer.output_dtypes else ""
        out_dtype = np.dtype(declared or dtype)
        if shape and all(isinstance(d, int) for d in shape) and out_dtype in _CUDA_TYPES:
            self._plan(state, int(np.prod(shape[:-1])), out_dtype)
        return state

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        a, out = inputs[0], outputs[0]
        z = inputs[state.spec.z_index] if state.spec.z_index is not None else None
        n, k = state.n, state.k
        if a.dtype != state.weight_t.dtype or a.shape[-1] != k or not a.flags.c_contiguous:
            raise ValueError(f"{self.name}: A must be C-contiguous {state.weight_t.dtype} [..., {k}], "
                             f"got {a.dtype} {a.shape}")
        m = a.size // k
        if out.shape[-1] != n or out.size != m * n or out.dtype not in _CUDA_TYPES:
            raise ValueError(f"{self.name}: output {out.dtype} {out.shape} does not hold [{m}, {n}]")
        if z is not None and (z.shape != out.shape or z.dtype != out.dtype or not z.flags.c_contiguous):
            raise ValueError(f"{self.name}: residual must be C-contiguous {out.dtype} {out.shape}, "
                             f"got {z.dtype} {z.shape}")
        if m == 0:
            return outputs
        plan = state.plans.get((m, out.dtype)) or self._plan(state, m, out.dtype)
        weight_layout, a_layout, d_layout = plan.layouts
        c_ptr = z.data.ptr if z is not None else out.data.ptr
        stream_ptr = stream.ptr if stream is not None else cupy().cuda.get_current_stream().ptr
        _lt().matmul(_handle(cupy().cuda.runtime.getDevice()), plan.desc, state.alpha.ctypes.data,
                     state.weight_t.data.ptr, weight_layout, a.data.ptr, a_layout,
                     state.beta[z is not None].ctypes.data, c_ptr, d_layout, out.data.ptr, d_layout,
                     plan.algo.ctypes.data, plan.workspace.data.ptr, plan.workspace_bytes, stream_ptr)
        return outputs

    def _plan(self, state: _State, m: int, out_dtype) -> _Plan:
        cp, lt = cupy(), _lt()
        out_dtype = np.dtype(out_dtype)
        ab_type, d_type = _CUDA_TYPES[np.dtype(state.weight_t.dtype)], _CUDA_TYPES[out_dtype]
        desc = lt.matmul_desc_create(_COMPUTE[state.precision], _CUDA_R_32F)
        code = state.spec.activation[0]
        epilogue = _EPILOGUES[9 if code == _HALF_ERF_GELU else code][state.bias_host is not None]
        _set_desc(lt, desc, "TRANSA", _OP_T)
        _set_desc(lt, desc, "TRANSB", _OP_N)
        epilogue_value = getattr(getattr(lt, "Epilogue", None), epilogue, _EPILOGUE_VALUES[epilogue])
        _set_desc(lt, desc, "EPILOGUE", int(epilogue_value))
        if state.bias_host is not None:
            bias = state.biases.get(out_dtype)
            if bias is None:
                bias = state.biases[out_dtype] = cp.asarray(state.bias_host.astype(out_dtype))
            _set_desc(lt, desc, "BIAS_POINTER", bias.data.ptr)
        n, k = state.n, state.k
        layouts = (lt.matrix_layout_create(ab_type, k, n, k),      # W[N, K] row-major = col-major K x N, op T
                   lt.matrix_layout_create(ab_type, k, m, k),      # A[M, K] row-major = col-major K x M
                   lt.matrix_layout_create(d_type, n, m, n))       # D[M, N] row-major = col-major N x M
        preference = lt.matmul_preference_create()
        limit = np.array(_WORKSPACE_LIMIT, np.uint64)
        lt.matmul_preference_set_attribute(preference, _MAX_WORKSPACE_BYTES_ATTR, limit.ctypes.data, limit.nbytes)
        result, count = np.zeros(_HEURISTIC_BYTES, np.uint8), np.zeros(1, np.int32)
        try:
            lt.matmul_algo_get_heuristic(_handle(cp.cuda.runtime.getDevice()), desc, layouts[0], layouts[1], layouts[2],
                                         layouts[2], preference, 1, result.ctypes.data, count.ctypes.data)
        finally:
            lt.matmul_preference_destroy(preference)
        status = int(result[_STATE_OFFSET:_STATE_OFFSET + 4].view(np.int32)[0])
        if count[0] < 1 or status != 0:
            raise RuntimeError(f"{self.name}: cuBLASLt has no algorithm for M={m} N={n} K={k} "
                               f"{out_dtype.name} epilogue {epilogue} (status {status})")
        workspace_bytes = int(result[_WORKSPACE_OFFSET:_WORKSPACE_OFFSET + 8].view(np.uint64)[0])
        plan = _Plan(desc, layouts, result, cp.empty(max(workspace_bytes, 1), cp.uint8), workspace_bytes)
        weakref.finalize(plan, _destroy, lt, desc, layouts)
        state.plans[(m, out_dtype)] = plan
        return plan


def _set_desc(lt, desc: int, name: str, value: int) -> None:
    number, dtype = _DESC_ATTRS[name]
    attribute = int(getattr(getattr(lt, "MatmulDescAttribute", None), name, number))
    buffer = np.array(value, dtype)
    lt.matmul_desc_set_attribute(desc, attribute, buffer.ctypes.data, buffer.nbytes)


def _destroy(lt, desc: int, layouts: tuple) -> None:
    for layout in layouts:
        lt.matrix_layout_destroy(layout)
    lt.matmul_desc_destroy(desc)


if nvmath is not None:
    register(CublasLtGemm())
