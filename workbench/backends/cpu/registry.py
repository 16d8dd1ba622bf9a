"""The CPU op table: one numpy function per ONNX op, registered with `@kernel`.

A kernel is `fn(inputs, attrs, node) -> array | sequence of arrays`:
  inputs  list of numpy arrays, None where an optional input is omitted (trailing ones dropped
          only if the model dropped them);
  attrs   the node's attributes as plain Python (`workbench.ir.node_attributes`); absent
          attributes are simply missing, so kernels apply ONNX defaults with `attrs.get`;
  node    `NodeInfo`: the opset version of the op's domain, how many outputs the model asks
          for, and the node name for error messages.
Kernels compute in the input dtype (float16 stays float16) so the CPU backend is a faithful
oracle for lower precisions.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["NodeInfo", "KernelFn", "kernel", "KERNELS", "lookup"]


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    opset: int
    num_outputs: int = 1
    name: str = ""


KernelFn = Callable[[Sequence[np.ndarray | None], dict[str, Any], NodeInfo], Any]
KERNELS: dict[tuple[str, str], KernelFn] = {}


def kernel(*ops: str, domain: str = "") -> Callable[[KernelFn], KernelFn]:
    """Register `fn` as the CPU implementation of each op in `ops` (of `domain`)."""
    def register(fn: KernelFn) -> KernelFn:
        for op in ops:
            key = (domain, op)
            if key in KERNELS:
                raise RuntimeError(f"CPU kernel for {domain}::{op} registered twice")
            KERNELS[key] = fn
        return fn
    return register


def lookup(domain: str, op: str) -> KernelFn | None:
    return KERNELS.get(("" if domain == "ai.onnx" else domain, op))
