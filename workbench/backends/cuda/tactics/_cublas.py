"""Strided-batched GEMM with unit alpha and zero beta for the attention tactic, on the capturable
cuBLAS binding every CUDA tactic shares (tactics/cublas_binding.py explains why not CuPy's)."""
from __future__ import annotations

import ctypes

import numpy as np

from workbench.backends.cuda.tactics import cublas_binding

__all__ = ["CublasHandle"]


class CublasHandle:
    """Holds the host scalars (fp32 one and zero) the calls read while a graph replays."""

    def __init__(self):
        self.one = np.ones(1, np.float32)
        self.zero = np.zeros(1, np.float32)

    def gemm_strided_batched(self, stream, trans_a: int, trans_b: int, m: int, n: int, k: int,
                             a, lda: int, stride_a: int, b, ldb: int, stride_b: int, c, ldc: int, stride_c: int,
                             batch: int, type_ab: int, type_c: int, compute: int, algo: int = -1) -> None:
        """Column-major C = op(A) op(B) for `batch` matrices, on `stream` (a CuPy Stream)."""
        cublas_binding.gemm_strided_batched_ex(
            stream, trans_a, trans_b, m, n, k, ctypes.c_void_p(self.one.ctypes.data), a.data.ptr, type_ab, lda,
            stride_a, b.data.ptr, type_ab, ldb, stride_b, ctypes.c_void_p(self.zero.ctypes.data), c.data.ptr,
            type_c, ldc, stride_c, batch, compute, algo)
