"""fallback.host: any op the CPU backend has, run on the host between two copies.

Why it exists: an engine should build even when one layer (an exotic op, a data-dependent shape
op the optimizer could not fold) has no GPU kernel; the build log then shows that layer on
"fallback.host" and its time in the profile says what it costs. It copies the inputs to the
host, runs the CPU kernel (the oracle itself, so it is right by construction) and copies the
results into the preallocated outputs. Channels-last layers are turned back to NCHW around the
CPU kernel, as builder/oracle.py does. It waits for the stream, so it cannot be captured in a CUDA
graph: `capturable = False` tells the runtime to run that engine uncaptured.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.registry import KernelFn, NodeInfo, lookup
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import present_outputs

__all__ = ["HostFallback"]


def _to_nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@dataclasses.dataclass
class _State:
    layer: Layer
    fn: KernelFn
    node: NodeInfo
    host_weights: dict[int, np.ndarray]      # input index -> the constant, already on the host


class HostFallback(CudaTactic):
    name = "fallback.host"
    source = "fallback"
    capturable = False                      # synchronizes with the host: no CUDA graph

    def supports(self, layer: Layer, precision: str) -> bool:
        return lookup(layer.domain, layer.op) is not None

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        fn = lookup(layer.domain, layer.op)
        if fn is None:
            raise KeyError(f"layer {layer.name!r}: the CPU backend has no kernel for {layer.qualified_op}")
        host = {i: np.asarray(weights[n]) for i, n in enumerate(layer.inputs) if n and n in weights}
        return _State(layer, fn, NodeInfo(layer.opset, len(layer.outputs), layer.name), host)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any] | None, stream: Any) -> list[Any]:
        cp = cupy()
        layer = state.layer
        nhwc = layer.layout == "NHWC"
        args: list[np.ndarray | None] = []
        for i in range(len(layer.inputs)):
            if i in state.host_weights:
                args.append(state.host_weights[i])
                continue
            value = inputs[i] if i < len(inputs) else None
            if value is None:
                args.append(None)
                continue
            host = cp.asnumpy(value, stream=stream) if isinstance(value, cp.ndarray) else np.asarray(value)
            args.append(_to_nchw(host) if nhwc and host.ndim == 4 else host)
        if stream is not None:
            stream.synchronize()
        with np.errstate(all="ignore"):
            result = state.fn(args, layer.attrs, state.node)
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        results = [np.asarray(r) for r in results]
        if nhwc:
            results = [_to_nhwc(r) if r.ndim == 4 else r for r in results]
        if outputs is None:                 # no memory plan: hand back fresh device arrays
            return [cp.asarray(r) for r in results]
        for index, out in present_outputs(layer, outputs):
            if index >= len(results):
                raise ValueError(f"layer {layer.name!r} ({layer.qualified_op}): the CPU kernel returned "
                                 f"{len(results)} outputs, output {index} is missing")
            out.set(_fit(layer, index, results[index], out), stream=stream)
        if stream is not None:
            stream.synchronize()            # the host buffers must outlive the copies
        return list(outputs)


def _fit(layer: Layer, index: int, value: np.ndarray, out) -> np.ndarray:
    """The host result in the output's dtype and shape (a reshape only when sizes agree)."""
    if value.shape != tuple(out.shape):
        if value.size != out.size:
            raise ValueError(f"layer {layer.name!r} ({layer.qualified_op}) output {index} "
                             f"({layer.outputs[index]!r}): the CPU kernel gave shape {value.shape}, the "
                             f"preallocated output is {tuple(out.shape)}")
        value = value.reshape(out.shape)
    return np.ascontiguousarray(value, dtype=out.dtype)


register(HostFallback())
