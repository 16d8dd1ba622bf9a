"""Schemas of the fused ops that graph passes create, in the `workbench` domain.

Registering them with ONNX (`onnx.defs.register_schema`) is what keeps an optimized graph a
valid ONNX model: the checker knows their inputs and attributes, strict shape inference runs
through them (each op infers its outputs by delegating to the standard op it extends, e.g.
FusedConv infers like Conv), and Netron opens the file. Every fused op carries a `source_nodes`
attribute listing the original nodes it replaced, so views and engine layers stay traceable.

One module per family registers its ops on import; this package imports them all.
"""
from __future__ import annotations

from workbench.ir.fused.registry import (FUSED_OPS, OPSET_VERSION, WORKBENCH_DOMAIN, AttrType, infer_like,  # noqa: F401
                                         register)
from workbench.ir.fused import conv, gemm, pointwise, pool, transformer, views  # noqa: E402,F401

__all__ = ["FUSED_OPS", "WORKBENCH_DOMAIN", "OPSET_VERSION", "register", "infer_like", "AttrType"]
