"""What every GEMM tactic of the CUDA backend shares: what a GEMM layer computes, cuBLAS calls on
row-major CuPy arrays, and the one-kernel epilogue.

A GEMM layer (MatMul, Gemm, workbench::FusedGemm) computes

    Y = act(alpha * op(A) @ op(B) + bias_scale * C + Z)

`gemm_spec(layer)` reads alpha, the transposes, the bias scale (Gemm's beta; 1 for a FusedGemm
epilogue bias) and the activation off the layer. `gemm_into` runs it for 2-D operands: cuBLAS
(`cublasGemmEx` with an explicit compute type, so fp32 never silently uses TF32 and fp16
accumulates in fp32; called through cublas_binding because CuPy's wrappers refuse graph capture)
writes `out`, then one kernel (kernels/gemm_epilogue.cu, or a CuPy elementwise kernel for odd
broadcasts) adds bias and residual and applies the activation in place. Nothing is allocated,
so it can be captured in a CUDA graph.

Row-major on column-major cuBLAS: C[M,N] = A[M,K] @ B[K,N] is computed as C^T = B^T @ A^T, whose
column-major operands are exactly the row-major arrays; a transposed view (unit stride along its
first axis) is passed with CUBLAS_OP_T instead of being copied.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel, kernel_source
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.epilogue import activation_of
from workbench.backends.cuda.tactics import cublas_binding

__all__ = ["GEMM_OPS", "GemmSpec", "gemm_spec", "is_gemm_layer", "gemm_into", "matmul_into", "apply_epilogue"]

GEMM_OPS = ("MatMul", "Gemm", "workbench::FusedGemm")
NO_ACTIVATION = (0, 0.0, 0.0)

# cudaDataType, cublasComputeType_t (CUBLAS_COMPUTE_32F, _32F_FAST_TF32), cublasOperation_t values
_CUDA_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 2}
_COMPUTE = {"fp32": 68, "fp16": 68, "tf32": 77}
_OP_N, _OP_T, _GEMM_DEFAULT = 0, 1, -1
_EPILOGUE_SOURCE = "gemm_epilogue.cu"
_CTYPES = {np.dtype(np.float16): "unsigned short", np.dtype(np.float32): "float"}
_EPILOGUE_KERNELS = {(y, b, vector): f"gemm_epilogue<{_CTYPES[y]}, {_CTYPES[b]}, {16 // y.itemsize if vector else 1}>"
                     for y in _CTYPES for b in _CTYPES for vector in (True, False)}


@dataclasses.dataclass(frozen=True)
class GemmSpec:
    trans_a: bool
    trans_b: bool
    alpha: float
    bias_scale: float                 # Gemm's beta on C; 1.0 for a FusedGemm epilogue bias
    activation: tuple                 # (code, p0, p1) of kernels/epilogue.cuh
    nd: bool                          # MatMul semantics: N-D operands, batch dims broadcast
    c_index: int | None               # position of C (bias) in layer.inputs, None if absent
    z_index: int | None               # position of the residual Z, None if absent


def is_gemm_layer(layer: Layer) -> bool:
    return layer.qualified_op in GEMM_OPS


def gemm_spec(layer: Layer) -> GemmSpec:
    """The math of a GEMM layer, exactly as the CPU kernels (cpu/ops/nn.py, fused_gemm.py) do it."""
    op, attrs = layer.qualified_op, layer.attrs
    present = [i < len(layer.inputs) and bool(layer.inputs[i]) for i in range(4)]
    if op == "MatMul":
        return GemmSpec(False, False, 1.0, 1.0, NO_ACTIVATION, True, None, None)
    if op not in GEMM_OPS:
        raise ValueError(f"layer {layer.name!r}: {op} is not a GEMM")
    trans_a, trans_b = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if op == "Gemm":
        scale, activation, nd, z = beta, NO_ACTIVATION, False, None
    else:
        epilogue_bias = bool(attrs.get("epilogue_bias", 0))
        plain = not trans_a and not trans_b and alpha == 1.0
        scale = 1.0 if epilogue_bias else beta
        nd = plain and (epilogue_bias or not present[2])
        activation, z = activation_of(layer), (3 if present[3] else None)
    c = 2 if present[2] and scale != 0.0 else None
    return GemmSpec(trans_a, trans_b, alpha, scale if c is not None else 1.0, activation, nd, c, z)


def gemm_into(a, b, out, *, precision: str, bias=None, residual=None, activation=NO_ACTIVATION,
              alpha: float = 1.0, bias_scale: float = 1.0, stream=None):
    """out = act(alpha * a @ b + bias_scale * bias + residual) for 2-D CuPy arrays.

    Args:
        a: [M, K], b: [K, N]; row-major, or transposed views of row-major arrays (no copy is made).
        out: [M, N], C-contiguous, float16 or float32 (fp16 operands may write float32).
        precision: "fp32" (exact fp32 math), "tf32" (TF32 tensor cores) or "fp16" (fp32 accumulate).
        bias, residual: arrays broadcastable to `out` (bias typically [N], residual [M, N]).
        activation: (code, p0, p1) as workbench.backends.cuda.epilogue.activation_of gives it.
    Example:
        >>> gemm_into(x, w, y, precision="fp16", bias=b, activation=(1, 0.0, 0.0))   # relu(x @ w + b)
    """
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        raise ValueError(f"gemm_into takes 2-D arrays, got a{a.shape} b{b.shape} out{out.shape}")
    if stream is not None:
        with stream:
            return gemm_into(a, b, out, precision=precision, bias=bias, residual=residual,
                             activation=activation, alpha=alpha, bias_scale=bias_scale)
    matmul_into(a, b, out, precision=precision, alpha=alpha)
    apply_epilogue(out, bias, residual, activation, bias_scale)
    return out


def matmul_into(a, b, out, *, precision: str, alpha: float = 1.0):
    """out = alpha * (a @ b) with NumPy matmul semantics for N-D operands (batch dims broadcast).
    A batch of matrices against a 2-D weight is one GEMM with the batch folded into M."""
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul_into takes operands of rank >= 2, got a{a.shape} b{b.shape} (promote vectors first)")
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2:
        raise ValueError(f"GEMM inner dimensions differ: a{a.shape} @ b{b.shape}")
    batch = _broadcast(a.shape[:-2], b.shape[:-2]) if a.ndim > 2 or b.ndim > 2 else ()
    if tuple(out.shape) != batch + (m, n) or not out.flags.c_contiguous:
        raise ValueError(f"output must be C-contiguous {batch + (m, n)}, got {out.shape}")
    if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous:
        a, out, batch = a.reshape(-1, k), out.reshape(-1, n), ()
    if out.size == 0:
        return out
    if k == 0:
        out.fill(0)
        return out
    if not batch:
        _gemm(a, b, out, 1, (0, 0, 0), precision, alpha)
        return out
    cp = cupy()
    views = [cp.broadcast_to(a, batch + a.shape[-2:]), cp.broadcast_to(b, batch + b.shape[-2:]), out]
    outer, count, strides = _collapse(batch, [v.strides[:len(batch)] for v in views])
    for index in itertools.product(*(range(d) for d in batch[:outer])):
        offsets = [sum(i * s for i, s in zip(index, v.strides[:outer])) for v in views]
        _gemm(*views, count, strides, precision, alpha, offsets)
    return out


def _broadcast(x: tuple, y: tuple) -> tuple:
    """np.broadcast_shapes for two batch shapes, without its per-call cost (run() is hot)."""
    x, y = (1,) * (len(y) - len(x)) + tuple(x), (1,) * (len(x) - len(y)) + tuple(y)
    if any(i != j and i != 1 and j != 1 for i, j in zip(x, y)):
        raise ValueError(f"GEMM batch dims {x} and {y} do not broadcast")
    return tuple(j if i == 1 else i for i, j in zip(x, y))


@functools.lru_cache(maxsize=64)
def _host_scalar(value: float) -> tuple:
    """A float32 host scalar cuBLAS reads through a pointer, and the pointer (kept alive here)."""
    array = np.array(value, np.float32)
    return array, array.ctypes.data


def _collapse(batch: tuple, strides: list) -> tuple[int, int, tuple]:
    """Fold the innermost batch dims that every operand walks with one stride into a single strided
    batch; returns (number of outer dims left to loop over, batch count, byte stride per operand)."""
    count, step, dim = 1, [0] * len(strides), len(batch)
    while dim > 0:
        size = batch[dim - 1]
        if size != 1:
            here = [s[dim - 1] for s in strides]
            if count == 1:
                step = here
            elif any(h != st * count for h, st in zip(here, step)):
                break
            count *= size
        dim -= 1
    return dim, count, tuple(step)


def _blas_view(shape, strides, itemsize: int, what: str) -> tuple[int, int]:
    """(op, ld) presenting a row-major logical matrix [R, C] to cuBLAS as its transpose [C, R]."""
    rows, cols = shape
    s0, s1 = strides
    if cols == 1 or s1 == itemsize:
        return _OP_N, max(s0 // itemsize if rows > 1 else cols, cols, 1)
    if rows == 1 or s0 == itemsize:
        return _OP_T, max(s1 // itemsize if cols > 1 else rows, rows, 1)
    raise ValueError(f"GEMM operand {what}: no unit stride in its last two dims (strides {strides}); "
                     "make it contiguous before the GEMM")


def _gemm(a, b, out, count, batch_strides, precision, alpha, offsets=(0, 0, 0)):
    if a.dtype != b.dtype or a.dtype not in _CUDA_TYPES or out.dtype not in _CUDA_TYPES:
        raise TypeError(f"GEMM dtypes a={a.dtype} b={b.dtype} out={out.dtype}: cuBLAS path takes float16 or float32")
    if precision not in _COMPUTE:
        raise ValueError(f"GEMM precision {precision!r} is not one of {sorted(_COMPUTE)}")
    if out.dtype != a.dtype and a.dtype != np.float16:
        raise TypeError(f"float32 operands need a float32 output, got {out.dtype}")
    m, k = a.shape[-2:]
    n = b.shape[-1]
    e_ab, e_c = a.itemsize, out.itemsize
    op_a, ld_a = _blas_view((m, k), a.strides[-2:], e_ab, "A")
    op_b, ld_b = _blas_view((k, n), b.strides[-2:], e_ab, "B")
    compute, t_ab, t_c = _COMPUTE[precision], _CUDA_TYPES[a.dtype], _CUDA_TYPES[out.dtype]
    alpha_ptr, beta_ptr = _host_scalar(float(alpha))[1], _host_scalar(0.0)[1]
    a_ptr, b_ptr, c_ptr = (x.data.ptr + off for x, off in zip((a, b, out), offsets))
    stream = cupy().cuda.get_current_stream()
    if count == 1:
        cublas_binding.gemm_ex(stream, op_b, op_a, n, m, k, alpha_ptr, b_ptr, t_ab, ld_b, a_ptr, t_ab, ld_a,
                               beta_ptr, c_ptr, t_c, n, compute, _GEMM_DEFAULT)
    else:
        sa, sb, sc = batch_strides
        cublas_binding.gemm_strided_batched_ex(stream, op_b, op_a, n, m, k, alpha_ptr, b_ptr, t_ab, ld_b,
                                               sb // e_ab, a_ptr, t_ab, ld_a, sa // e_ab, beta_ptr, c_ptr, t_c,
                                               n, sc // e_c, count, compute, _GEMM_DEFAULT)


def apply_epilogue(out, bias=None, residual=None, activation=NO_ACTIVATION, bias_scale: float = 1.0):
    """out = act(out + bias_scale * bias + residual), in place, as one kernel (none when there is
    nothing to do). A float16/float32 bias of out's last dim and a residual of out's shape and
    dtype take kernels/gemm_epilogue.cu (16-byte vectors); anything else that broadcasts, a CuPy
    elementwise kernel."""
    code, p0, p1 = activation
    if (bias is None and residual is None and not code) or out.size == 0:
        return out
    n = out.shape[-1] if out.ndim else 1
    fast = out.dtype in (np.float16, np.float32) and out.flags.c_contiguous \
        and (bias is None or (bias.dtype in _CTYPES and bias.size == n and bias.flags.c_contiguous
                              and bias.shape[-1:] == (n,))) \
        and (residual is None or (residual.shape == out.shape and residual.dtype == out.dtype
                                  and residual.flags.c_contiguous))
    if not fast:
        kernel = _epilogue_kernel(bias is not None, residual is not None)
        kernel(*[x for x in (bias, residual) if x is not None], float(bias_scale), int(code), float(p0), float(p1), out)
        return out
    width = 16 // out.itemsize
    vector = out.size % width == 0 and (bias is None or n % width == 0) and out.data.ptr % 16 == 0 \
        and (residual is None or residual.data.ptr % 16 == 0)
    step = width if vector else 1
    kernel = _fast_epilogue_kernel(out.dtype, bias.dtype if bias is not None else out.dtype, vector)
    null = np.uint64(0)
    blocks = (out.size // step + 255) // 256
    kernel((blocks, 1, 1), (256, 1, 1),
           (out, bias if bias is not None else null, residual if residual is not None else null,
            np.int64(out.size), np.int32(n), np.float32(bias_scale), np.int32(code), np.float32(p0),
            np.float32(p1)))
    return out


@functools.lru_cache(maxsize=None)
def _fast_epilogue_kernel(out_dtype, bias_dtype, vector: bool):
    name = _EPILOGUE_KERNELS[(np.dtype(out_dtype), np.dtype(bias_dtype), vector)]
    return get_kernel(_EPILOGUE_SOURCE, name, tuple(_EPILOGUE_KERNELS.values()))


@functools.lru_cache(maxsize=None)
def _epilogue_kernel(has_bias: bool, has_residual: bool):
    params, body = [], ["float v = (float)y;"]
    if has_bias:
        params.append("B bias")
        body.append("v += bias_scale * (float)bias;")
    if has_residual:
        params.append("R residual")
        body.append("v += (float)residual;")
    params += ["float32 bias_scale", "int32 act", "float32 p0", "float32 p1"]
    body.append("y = (Y)wb_activate(v, act, p0, p1);")
    preamble = kernel_source("epilogue.cuh").replace("#pragma once", "")
    return cupy().ElementwiseKernel(", ".join(params), "Y y", "\n".join(body),
                                    f"wb_gemm_epilogue_b{int(has_bias)}r{int(has_residual)}", preamble=preamble)
