"""cuBLAS called through ctypes, with one handle and one workspace per stream, so that GEMMs can be
captured into CUDA graphs.

Why not CuPy's cuBLAS wrappers: they raise "calling cuBLAS API during stream capture is currently
unsupported", and the runtime captures every run into a graph. cuBLAS itself captures fine when
it never has to allocate: each handle here gets its own workspace (cublasSetWorkspace), and a
handle is used by one stream only, so concurrent streams never share scratch memory. The handle
keeps CUBLAS_DEFAULT_MATH, so CUBLAS_COMPUTE_32F is true fp32 whatever CuPy or others set on
theirs. The library is the one CuPy loaded (found by its soname once CuPy's module is imported).
"""
from __future__ import annotations

import ctypes
import functools
import threading
import weakref

from workbench.backends.cuda.device import cupy

__all__ = ["gemm_ex", "gemm_strided_batched_ex"]

WORKSPACE_BYTES = 32 << 20          # what cuBLAS recommends on Hopper
_handles: dict = {}                 # (device id, stream pointer) -> (handle, workspace)
_lock = threading.Lock()
_p, _i, _ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    from cupy_backends.cuda.libs import cublas  # noqa: F401  (makes CuPy load libcublas into the process)
    errors = []
    for name in ("libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            errors.append(str(exc))
    else:
        try:
            from cuda.pathfinder import load_nvidia_dynamic_lib
            lib = ctypes.CDLL(load_nvidia_dynamic_lib("cublas").abs_path)
        except Exception as exc:
            raise OSError(f"libcublas could not be loaded ({'; '.join(errors)}; {exc})") from exc
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(_p)]
    lib.cublasDestroy_v2.argtypes = [_p]
    lib.cublasSetStream_v2.argtypes = [_p, _p]
    lib.cublasSetWorkspace_v2.argtypes = [_p, _p, ctypes.c_size_t]
    lib.cublasSetMathMode.argtypes = [_p, _i]
    lib.cublasGemmEx.argtypes = [_p, _i, _i, _i, _i, _i, _p, _p, _i, _i, _p, _i, _i, _p, _p, _i, _i, _i, _i]
    lib.cublasGemmStridedBatchedEx.argtypes = [_p, _i, _i, _i, _i, _i, _p, _p, _i, _i, _ll, _p, _i, _i, _ll,
                                               _p, _p, _i, _i, _ll, _i, _i, _i]
    return lib


def _check(status: int, call: str) -> None:
    if status != 0:
        raise RuntimeError(f"{call} failed with cublasStatus_t {status}")


def _handle(stream) -> int:
    """The handle bound to `stream` (CuPy's current stream when None); made on first use."""
    cp = cupy()
    stream = stream if stream is not None else cp.cuda.get_current_stream()
    key = (cp.cuda.runtime.getDevice(), stream.ptr)
    entry = _handles.get(key)
    if entry is not None:
        return entry[0]
    with _lock:
        if key in _handles:
            return _handles[key][0]
        lib, handle = _library(), _p()
        _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        workspace = cp.empty(WORKSPACE_BYTES, cp.uint8)
        _check(lib.cublasSetStream_v2(handle, _p(int(stream.ptr))), "cublasSetStream")
        _check(lib.cublasSetWorkspace_v2(handle, _p(workspace.data.ptr), WORKSPACE_BYTES), "cublasSetWorkspace")
        _check(lib.cublasSetMathMode(handle, 0), "cublasSetMathMode")           # CUBLAS_DEFAULT_MATH
        _handles[key] = (handle.value, workspace)
        try:                                  # a stream that goes away takes its handle along
            weakref.finalize(stream, _release, key)
        except TypeError:
            pass
        return handle.value


def _release(key) -> None:
    with _lock:
        entry = _handles.pop(key, None)
    if entry is not None:
        _library().cublasDestroy_v2(_p(entry[0]))


def gemm_ex(stream, op_a, op_b, m, n, k, alpha_ptr, a, a_type, lda, b, b_type, ldb, beta_ptr,
            c, c_type, ldc, compute, algo) -> None:
    """cublasGemmEx on `stream` (column-major; pointers as ints)."""
    _check(_library().cublasGemmEx(_handle(stream), op_a, op_b, m, n, k, alpha_ptr, a, a_type, lda, b, b_type,
                                   ldb, beta_ptr, c, c_type, ldc, compute, algo), "cublasGemmEx")


def gemm_strided_batched_ex(stream, op_a, op_b, m, n, k, alpha_ptr, a, a_type, lda, stride_a, b, b_type, ldb,
                            stride_b, beta_ptr, c, c_type, ldc, stride_c, count, compute, algo) -> None:
    """cublasGemmStridedBatchedEx on `stream` (column-major; strides in elements)."""
    _check(_library().cublasGemmStridedBatchedEx(_handle(stream), op_a, op_b, m, n, k, alpha_ptr, a, a_type, lda,
                                                 stride_a, b, b_type, ldb, stride_b, beta_ptr, c, c_type, ldc,
                                                 stride_c, count, compute, algo), "cublasGemmStridedBatchedEx")
