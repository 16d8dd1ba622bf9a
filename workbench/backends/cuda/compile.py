"""Kernels from `kernels/*.cu`, compiled at run time by NVRTC through CuPy's RawModule.

Each template instance (tile sizes, dtype, epilogue) is named by a C++ name expression, e.g.
"gemm_tc<128, 128, 32, 1>", and is one tactic. CuPy keeps compiled modules in its on-disk kernel
cache (CUPY_CACHE_DIR, default ~/.cupy/kernel_cache), keyed by source, options and architecture,
so a second process loads them without compiling; the lru_cache below spares re-reading in one.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from workbench.backends.cuda.device import compute_capability, cupy

__all__ = ["KERNELS_DIR", "kernel_source", "get_kernel", "get_module", "instance"]

KERNELS_DIR = Path(__file__).resolve().parents[3] / "kernels"


_LOCAL_INCLUDE = re.compile(r'^[ \t]*#include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


def kernel_source(filename: str) -> str:
    """The file's text with its local headers (#include "x.cuh") inlined, each once: CuPy keys its
    disk cache on the source text, so an edited header must change the text to be recompiled."""
    return _inlined(filename, set())


def _inlined(filename: str, seen: set[str]) -> str:
    path = KERNELS_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"CUDA source {path} is missing (the kernels/ folder ships beside the package)")

    def header(match: re.Match) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _inlined(name, seen)

    return _LOCAL_INCLUDE.sub(header, path.read_text())


def instance(template: str, *args) -> str:
    """The name expression of one template instance, "template<a, b, c>", written one way so that a
    tactic's own instance and its file's list of all instances (get_kernel) match."""
    return f"{template}<{', '.join(str(a) for a in args)}>"


@functools.lru_cache(maxsize=None)
def get_module(filename: str, name_expressions: tuple[str, ...], options: tuple[str, ...] = ()):
    """One RawModule per (file, instances, options); compiled on first use, cached on disk by CuPy."""
    cp = cupy()
    major, minor = compute_capability()
    opts = ("--std=c++17", f"--gpu-architecture=sm_{major}{minor}", "-DNDEBUG", f"-I{KERNELS_DIR}") + tuple(options)
    return cp.RawModule(code=kernel_source(filename), options=opts, name_expressions=name_expressions,
                        backend="nvrtc")


def get_kernel(filename: str, name_expression: str, all_instances: tuple[str, ...] | None = None,
               options: tuple[str, ...] = ()):
    """The compiled function for one template instance. Pass every instance of the file in
    `all_instances` so one NVRTC compile serves all the tactics that share the source."""
    names = tuple(all_instances) if all_instances else (name_expression,)
    return get_module(filename, names, tuple(options)).get_function(name_expression)
