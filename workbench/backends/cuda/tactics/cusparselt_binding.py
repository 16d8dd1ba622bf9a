"""cuSPARSELt (2:4 structured-sparse GEMM on sparse tensor cores) through ctypes: the calls the
cusparselt tactic needs.

Why ctypes: the pip wheel (nvidia-cusparselt-cu13, or -cu12; PyTorch installs one) is the only
dependency. Signatures, enum values and struct sizes are those of cusparseLt.h, checked against the
headers of 0.8.0 and 0.10.0: the two declare the same functions, enums and 512-byte opaque structs
(0.10.0 only changes the include of cusparse.h and the CUSPARSELT_VERSION formula, identical for
every 0.x.y: cusparseLtGetVersion gives 800 for 0.8.0, 1000 for 0.10.0). So one binding serves both,
and nothing branches on the version. Any other release is refused before the first handle is made
(`SUPPORTED_VERSIONS`; read with cusparseLtGetProperty, which needs no GPU): its enums or structs may
differ, and a wrong argument there can end in an illegal instruction, which poisons the CUDA context
of the whole process. $WB_CUSPARSELT_ANY_VERSION=1 lifts the check (at your own risk).

Opaque structs (handle, matrix / matmul descriptors, algorithm selection, plan) are
`alignas(16) uint8_t data[512]`; `Opaque` keeps each in a 16-byte aligned host buffer that never
moves (the library may keep pointers to the descriptors a plan was made from) with room to spare.
A plan holds references to what it was made from, so they outlive it; `Opaque` objects destroy
themselves when collected. There is one handle per device and thread, made on first use and never
destroyed.

Library lookup, first hit wins: the wheel's file under the `nvidia` namespace package
(nvidia/cu13/lib for 0.10, nvidia/cusparselt/lib for 0.8, nvidia/cu12/lib), the path in
$WB_CUSPARSELT_LIBRARY, ctypes.util.find_library("cusparseLt"), then the plain soname. `available()`
says whether it loaded, is a supported release, and a handle could be made on a GPU; it never
raises. Every call that returns a status other than CUSPARSE_STATUS_SUCCESS raises `CusparseLtError`
naming the function and the status. A kernel that faults is not a status: the tactic runs its calls
once in a subprocess first (sparse_gemm.self_test) and bench/diagnose_cusparselt.py runs them one step
at a time.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
import threading
import weakref
from pathlib import Path

import numpy as np

__all__ = ["CusparseLtError", "Opaque", "available", "why_unavailable", "library_path", "library_version",
           "version", "version_supported", "handle", "matrix_descriptor", "matmul_descriptor",
           "set_matmul_attribute", "alg_selection", "alg_attribute", "set_alg_attribute", "plan",
           "workspace_size", "matmul", "compressed_size", "compress", "prune_check", "SUPPORTED_VERSIONS"]

LIBRARY_ENV = "WB_CUSPARSELT_LIBRARY"
ANY_VERSION_ENV = "WB_CUSPARSELT_ANY_VERSION"
SONAME = "libcusparseLt.so.0"
_WHEEL_DIRS = ("cu13/lib", "cusparselt/lib", "cu12/lib")      # under each path of the `nvidia` namespace
# (major, minor) releases whose header this binding was checked against (any patch level)
SUPPORTED_VERSIONS = ((0, 8), (0, 10))

_ALLOCATED_BYTES = 2048               # the header's opaque structs are 512 bytes; room for a larger one
_ALIGN = 16

# cudaDataType (library_types.h), cusparseOrder_t / cusparseOperation_t (cusparse.h)
CUDA_R_32F, CUDA_R_16F = 0, 2
ORDER_COL, ORDER_ROW, OP_N, OP_T = 1, 2, 0, 1
# cusparseLt.h enums, in declaration order (the same in 0.8.0 and 0.10.0)
SPARSITY_50_PERCENT = 0                                         # cusparseLtSparsity_t
COMPUTE_32I, COMPUTE_16F, COMPUTE_32F = 0, 1, 2                 # cusparseComputeType
ALG_DEFAULT = 0                                                 # cusparseLtMatmulAlg_t
ACTIVATION_RELU, ACTIVATION_GELU, BIAS_POINTER = 0, 3, 8        # cusparseLtMatmulDescAttribute_t
ALG_CONFIG_ID, ALG_CONFIG_MAX_ID, SEARCH_ITERATIONS, SPLIT_K = 0, 1, 2, 3   # cusparseLtMatmulAlgAttribute_t
_MAJOR, _MINOR, _PATCH = 0, 1, 2                                # libraryPropertyType

_STATUS_NAMES = dict(enumerate(("SUCCESS", "NOT_INITIALIZED", "ALLOC_FAILED", "INVALID_VALUE", "ARCH_MISMATCH",
                                 "MAPPING_ERROR", "EXECUTION_FAILED", "INTERNAL_ERROR", "MATRIX_TYPE_NOT_SUPPORTED",
                                 "ZERO_PIVOT", "NOT_SUPPORTED", "INSUFFICIENT_RESOURCES")))   # cusparseStatus_t

_p, _i, _i64, _u32, _size = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_uint32, ctypes.c_size_t
_size_p, _int_p = ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_int)
# handle, plan, alpha, d_A, d_B, beta, d_C, d_D, workspace, cudaStream_t* streams, int32 numStreams
_MATMUL_ARGS = [_p, _p, _p, _p, _p, _p, _p, _p, _p, _p, ctypes.c_int32]
_SIGNATURES = {
    "cusparseLtInit": [_p], "cusparseLtDestroy": [_p], "cusparseLtGetVersion": [_p, _int_p],
    "cusparseLtGetProperty": [_i, _int_p],
    "cusparseLtDenseDescriptorInit": [_p, _p, _i64, _i64, _i64, _u32, _i, _i],
    "cusparseLtStructuredDescriptorInit": [_p, _p, _i64, _i64, _i64, _u32, _i, _i, _i],
    "cusparseLtMatDescriptorDestroy": [_p], "cusparseLtMatmulDescriptorInit": [_p, _p, _i, _i, _p, _p, _p, _p, _i],
    "cusparseLtMatmulDescSetAttribute": [_p, _p, _i, _p, _size],
    "cusparseLtMatmulAlgSelectionInit": [_p, _p, _p, _i], "cusparseLtMatmulAlgSelectionDestroy": [_p],
    "cusparseLtMatmulAlgSetAttribute": [_p, _p, _i, _p, _size],
    "cusparseLtMatmulAlgGetAttribute": [_p, _p, _i, _p, _size],
    "cusparseLtMatmulPlanInit": [_p, _p, _p, _p], "cusparseLtMatmulPlanDestroy": [_p],
    "cusparseLtMatmulGetWorkspace": [_p, _p, _size_p],
    "cusparseLtMatmul": _MATMUL_ARGS, "cusparseLtMatmulSearch": _MATMUL_ARGS,
    # handle, structured descriptor, int isSparseA, cusparseOperation_t op, d_in, int* d_valid (device), stream
    "cusparseLtSpMMAPruneCheck2": [_p, _p, _i, _i, _p, _p, _p],
    "cusparseLtSpMMACompressedSize2": [_p, _p, _size_p, _size_p],
    # handle, structured descriptor, isSparseA, op, d_dense, d_compressed, d_compressed_buffer, stream
    "cusparseLtSpMMACompress2": [_p, _p, _i, _i, _p, _p, _p, _p],
}


class CusparseLtError(RuntimeError):
    def __init__(self, function: str, status: int):
        self.function, self.status = function, status
        super().__init__(f"{function} failed with CUSPARSE_STATUS_{_status_name(status)} (cusparseStatus_t {status})")


def _status_name(status: int) -> str:
    try:
        return _library().cusparseLtGetErrorName(status).decode().removeprefix("CUSPARSE_STATUS_")
    except Exception:                         # no library, or no name for this status
        return _STATUS_NAMES.get(status, "UNKNOWN")


def library_candidates() -> list[str]:
    """Where the library is looked for, in order (files that exist, then names for the loader)."""
    found = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        found += [str(Path(root, sub, SONAME)) for sub in _WHEEL_DIRS if Path(root, sub, SONAME).is_file()]
    if os.environ.get(LIBRARY_ENV):
        found.append(os.environ[LIBRARY_ENV])
    system = ctypes.util.find_library("cusparseLt")
    return list(dict.fromkeys(found + ([system] if system else []) + [SONAME]))


@functools.lru_cache(maxsize=1)
def _loaded() -> tuple[ctypes.CDLL, str]:
    errors = []
    for candidate in library_candidates():
        try:
            lib = ctypes.CDLL(candidate)
            break
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
    else:
        raise OSError(f"cuSPARSELt ({SONAME}) could not be loaded; install nvidia-cusparselt-cu13 or set "
                      f"{LIBRARY_ENV}. Tried: {'; '.join(errors)}")
    missing = [name for name in [*_SIGNATURES, "cusparseLtGetErrorName"] if not hasattr(lib, name)]
    if missing:
        raise OSError(f"{candidate} lacks {', '.join(missing)}: not a cuSPARSELt this binding knows")
    for name, argtypes in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int
    lib.cusparseLtGetErrorName.argtypes, lib.cusparseLtGetErrorName.restype = [_i], ctypes.c_char_p
    return lib, candidate


def _library() -> ctypes.CDLL:
    return _loaded()[0]


def library_path() -> str:
    """The file (or name) the library was loaded from."""
    return _loaded()[1]


def _call(function: str, *args) -> None:
    status = getattr(_library(), function)(*args)
    if status != 0:
        raise CusparseLtError(function, status)


@functools.lru_cache(maxsize=1)
def library_version() -> tuple[int, int, int]:
    """(major, minor, patch) of the loaded library, from cusparseLtGetProperty: no handle, no GPU."""
    parts = []
    for prop in (_MAJOR, _MINOR, _PATCH):
        value = ctypes.c_int(-1)
        _call("cusparseLtGetProperty", prop, ctypes.byref(value))
        parts.append(value.value)
    return tuple(parts)


def version() -> str:
    """'0.8.0'-style version of the loaded library."""
    return ".".join(map(str, library_version()))


def version_supported(found: tuple[int, ...]) -> tuple[bool, str]:
    """Whether this binding was checked against release `found` (major, minor, patch); the reason if not."""
    if tuple(found[:2]) in SUPPORTED_VERSIONS:
        return True, ""
    text = ".".join(map(str, found))
    checked = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_VERSIONS)
    if os.environ.get(ANY_VERSION_ENV) == "1":
        return True, f"cuSPARSELt {text} is not among the checked releases ({checked}); used since {ANY_VERSION_ENV}=1"
    return False, (f"cuSPARSELt {text} is not among the releases this binding was checked against ({checked}): "
                   f"refused, since a changed struct or enum could fault on the GPU and poison the CUDA context. "
                   f"Install one of those (pip install nvidia-cusparselt-cu13==0.8.* or ==0.10.*, or point "
                   f"{LIBRARY_ENV} at one), or set {ANY_VERSION_ENV}=1 to try it anyway")


class Opaque:
    """One cuSPARSELt struct in a fixed, 16-byte aligned host buffer; `keep` holds what it was made
    from (alive as long as it is), `destroy` names the function that releases it when collected."""

    def __init__(self, kind: str, destroy: str | None = None, keep: tuple = ()):
        self.kind, self.keep = kind, keep
        self._buffer = np.zeros(_ALLOCATED_BYTES + _ALIGN, np.uint8)
        base = self._buffer.ctypes.data
        self.ptr = base + (-base) % _ALIGN
        self._destroy = destroy

    def arm(self) -> "Opaque":
        """Destroy with the library once collected (called after a successful init only)."""
        if self._destroy is not None:
            finalizer = weakref.finalize(self, _destroy, self._destroy, self._buffer, self.ptr)
            finalizer.atexit = False          # at exit the driver may already be gone: let the process reclaim it
        return self


def _destroy(function: str, buffer: np.ndarray, ptr: int) -> None:
    try:
        getattr(_library(), function)(ptr)
    except Exception:                         # never raise from a finalizer
        pass


_local = threading.local()              # .handles: device -> this thread's handle
_every_handle: list[Opaque] = []        # all of them, alive for good: descriptors may point at theirs
_lock = threading.Lock()


def handle() -> int:
    """This thread's handle for the current device (cusparseLtInit on first use, once the release is known
    to be supported). One per thread, as NVIDIA asks (a handle shared across threads fails with
    INTERNAL_ERROR: pytorch/pytorch#113776); never destroyed."""
    from workbench.backends.cuda.device import cupy
    device = cupy().cuda.runtime.getDevice()
    handles = _local.__dict__.setdefault("handles", {})
    found = handles.get(device)
    if found is None:
        ok, why = version_supported(library_version())
        if not ok:
            raise RuntimeError(why)
        made = Opaque("handle")
        _call("cusparseLtInit", made.ptr)
        with _lock:
            _every_handle.append(made)
        found = handles[device] = made
    return found.ptr


@functools.lru_cache(maxsize=1)
def _availability() -> tuple[bool, str]:
    try:
        _loaded()
        found = library_version()
    except Exception as exc:
        return False, str(exc)
    ok, why = version_supported(found)
    if not ok:
        return False, f"{why} (loaded from {library_path()})"
    try:
        from workbench.backends.cuda.device import cuda_available
        if not cuda_available():
            return False, "no CUDA GPU (CuPy missing or no device)"
        handle()
    except Exception as exc:
        return False, f"cuSPARSELt {version()} loaded from {library_path()} but cusparseLtInit failed: {exc}"
    return True, why                              # why: the ANY_VERSION note, or ""


def available() -> bool:
    """True when the library loads, is a supported release, and a handle can be made on this
    machine's GPU. Never raises, and runs no kernel."""
    return _availability()[0]


def why_unavailable() -> str:
    return _availability()[1]


def matrix_descriptor(rows: int, cols: int, ld: int, value_type: int, *, structured: bool = False,
                      order: int = ORDER_COL, alignment: int = 16) -> Opaque:
    """A dense matrix, or (structured=True) the 2:4 operand; `alignment` is in bytes."""
    made = Opaque("structured" if structured else "dense", "cusparseLtMatDescriptorDestroy")
    common = (handle(), made.ptr, rows, cols, ld, alignment, value_type, order)
    if structured:
        _call("cusparseLtStructuredDescriptorInit", *common, SPARSITY_50_PERCENT)
    else:
        _call("cusparseLtDenseDescriptorInit", *common)
    return made.arm()


def matmul_descriptor(op_a: int, op_b: int, a: Opaque, b: Opaque, c: Opaque, d: Opaque, compute: int) -> Opaque:
    """D = act(alpha * op(A) @ op(B) + beta * C + bias); the header has no destroy function for it."""
    made = Opaque("matmul descriptor", keep=(a, b, c, d))
    _call("cusparseLtMatmulDescriptorInit", handle(), made.ptr, op_a, op_b, a.ptr, b.ptr, c.ptr, d.ptr, compute)
    return made


def set_matmul_attribute(descriptor: Opaque, attribute: int, value: ctypes._SimpleCData) -> None:
    """`value` is a ctypes scalar, passed by address with its size: c_int(1) for an activation flag,
    c_void_p(device pointer) for BIAS_POINTER (the library reads the pointer value, the header's `&dBias`)."""
    _call("cusparseLtMatmulDescSetAttribute", handle(), descriptor.ptr, attribute, ctypes.byref(value),
          ctypes.sizeof(value))


def alg_selection(descriptor: Opaque, alg: int = ALG_DEFAULT) -> Opaque:
    made = Opaque("algorithm selection", "cusparseLtMatmulAlgSelectionDestroy", keep=(descriptor,))
    _call("cusparseLtMatmulAlgSelectionInit", handle(), made.ptr, descriptor.ptr, alg)
    return made.arm()


def alg_attribute(selection: Opaque, attribute: int) -> int:
    value = ctypes.c_int()
    _call("cusparseLtMatmulAlgGetAttribute", handle(), selection.ptr, attribute, ctypes.byref(value),
          ctypes.sizeof(value))
    return value.value


def set_alg_attribute(selection: Opaque, attribute: int, value: int) -> None:
    """Set an int attribute (ALG_CONFIG_ID, SEARCH_ITERATIONS, SPLIT_K) before the plan is made."""
    data = ctypes.c_int(value)
    _call("cusparseLtMatmulAlgSetAttribute", handle(), selection.ptr, attribute, ctypes.byref(data),
          ctypes.sizeof(data))


def plan(descriptor: Opaque, selection: Opaque) -> Opaque:
    made = Opaque("matmul plan", "cusparseLtMatmulPlanDestroy", keep=(descriptor, selection))
    _call("cusparseLtMatmulPlanInit", handle(), made.ptr, descriptor.ptr, selection.ptr)
    return made.arm()


def workspace_size(matmul_plan: Opaque) -> int:
    size = ctypes.c_size_t()
    _call("cusparseLtMatmulGetWorkspace", handle(), matmul_plan.ptr, ctypes.byref(size))
    return size.value


# -- execution: pointers are ints (device, except alpha/beta: host float32, and `streams`: a host
# cudaStream_t[stream_count]; streams=0 with stream_count=0 means the default stream) --
def matmul(matmul_plan: Opaque, alpha: int, a: int, b: int, beta: int, c: int, d: int, workspace: int,
           streams: int, stream_count: int, *, search: bool = False) -> None:
    """cusparseLtMatmul; search=True: cusparseLtMatmulSearch, which runs every algorithm of the plan
    and keeps the fastest in it (blocking; build time only, never in a captured run)."""
    _call("cusparseLtMatmulSearch" if search else "cusparseLtMatmul", handle(), matmul_plan.ptr, alpha, a, b,
          beta, c, d, workspace, streams, stream_count)


def prune_check(sparse: Opaque, dense: int, valid: int, stream: int, op: int, is_sparse_a: bool = True) -> None:
    """Writes 0 to the device int at `valid` when `dense` follows the 2:4 pattern cuSPARSELt expects."""
    _call("cusparseLtSpMMAPruneCheck2", handle(), sparse.ptr, int(is_sparse_a), op, dense, valid, stream)


def compressed_size(sparse: Opaque) -> tuple[int, int]:
    """(bytes of the compressed matrix, bytes of the scratch buffer compress needs); no plan needed."""
    size, scratch = ctypes.c_size_t(), ctypes.c_size_t()
    _call("cusparseLtSpMMACompressedSize2", handle(), sparse.ptr, ctypes.byref(size), ctypes.byref(scratch))
    return size.value, scratch.value


def compress(sparse: Opaque, dense: int, compressed: int, scratch: int, stream: int, op: int,
             is_sparse_a: bool = True) -> None:
    _call("cusparseLtSpMMACompress2", handle(), sparse.ptr, int(is_sparse_a), op, dense, compressed, scratch, stream)
