"""kernel_source inlines the kernels' local headers, each once, so CuPy's source-keyed disk cache
sees a header edit as a new source. Pure text: runs without a GPU."""
from __future__ import annotations

import re

import pytest

from workbench.backends.cuda.compile import KERNELS_DIR, kernel_source

_LOCAL = re.compile(r'^\s*#include\s+"', re.MULTILINE)


@pytest.mark.parametrize("filename", sorted(p.name for p in KERNELS_DIR.glob("*.cu")))
def test_every_kernel_has_its_local_headers_inlined(filename):
    text = kernel_source(filename)
    assert not _LOCAL.search(text), f"{filename}: a local #include was left for NVRTC to resolve"
    raw = (KERNELS_DIR / filename).read_text()
    for header in re.findall(r'^\s*#include\s+"([^"]+)"', raw, re.MULTILINE):
        first_line = (KERNELS_DIR / header).read_text().splitlines()[0]
        assert text.count(first_line) == 1, f"{filename}: {header} inlined {text.count(first_line)} times"


def test_a_header_included_twice_is_inlined_once():
    """gemm_tc.cu and conv_igemm.cu include async_copy.cuh and epilogue.cuh: one copy of each."""
    for filename in ("gemm_tc.cu", "conv_igemm.cu"):
        text = kernel_source(filename)
        assert text.count("namespace wb_async {") == 1
        assert text.count("wb_activate(float x") == 1


def test_missing_header_is_named(tmp_path, monkeypatch):
    from workbench.backends.cuda import compile as compile_module
    (tmp_path / "k.cu").write_text('#include "nope.cuh"\n__global__ void k() {}\n')
    monkeypatch.setattr(compile_module, "KERNELS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.cuh"):
        kernel_source("k.cu")
