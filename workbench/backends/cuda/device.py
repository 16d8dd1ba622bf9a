"""CuPy and the GPU, imported lazily: the package imports and the CPU backend runs on machines with
neither, and asking for the CUDA backend there says exactly what is missing."""
from __future__ import annotations

import functools
from types import ModuleType

from workbench.errors import BuildError

__all__ = ["cupy", "cuda_available", "device_name", "compute_capability", "device_info"]


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[ModuleType | None, str]:
    try:
        import cupy
    except Exception as exc:          # ImportError, or a CUDA library failing to load
        return None, f"CuPy is not installed ({type(exc).__name__}: {exc}); install the 'gpu' extra: pip install -e '.[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy found no usable NVIDIA GPU ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, "CuPy found no NVIDIA GPU"
    return cupy, ""


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return _probe()[0] is not None


def cupy() -> ModuleType:
    """The cupy module, or a BuildError saying why the CUDA backend cannot run here."""
    module, why = _probe()
    if module is None:
        raise BuildError(f"backend='cuda' is not available: {why}. Use backend='cpu' on this machine.")
    return module


@functools.lru_cache(maxsize=1)
def device_info() -> dict:
    """What a plan records and checks: the GPU's name, compute capability and the CUDA/CuPy versions."""
    cp = cupy()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"name": name, "compute_capability": f"{props['major']}.{props['minor']}",
            "sm_count": int(props["multiProcessorCount"]), "cuda_runtime": int(cp.cuda.runtime.runtimeGetVersion()),
            "cupy": cp.__version__}


def device_name() -> str:
    return device_info()["name"]


def compute_capability() -> tuple[int, int]:
    major, minor = device_info()["compute_capability"].split(".")
    return int(major), int(minor)
