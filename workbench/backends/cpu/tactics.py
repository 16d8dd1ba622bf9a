"""CPU tactics. `NumpyTactic` runs the registered numpy kernel of an op; it is both the CPU
backend's default way to run a layer and the reference every other tactic is checked against.
`SgemmTactic` is the second way to run Conv/MatMul/Gemm, so the autotuner has a choice here too."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.nn import ACCUMULATE_F64
from workbench.backends.cpu.registry import KernelFn, NodeInfo, lookup

__all__ = ["NumpyTactic", "SgemmTactic"]


@dataclasses.dataclass
class _State:
    fn: KernelFn
    attrs: dict[str, Any]
    node: NodeInfo


class NumpyTactic:
    name = "numpy"

    def supports(self, layer: Layer, precision: str) -> bool:
        return lookup(layer.domain, layer.op) is not None

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        fn = lookup(layer.domain, layer.op)
        if fn is None:
            raise KeyError(f"no CPU kernel for {layer.qualified_op}")
        return _State(fn, layer.attrs, NodeInfo(layer.opset, len(layer.outputs), layer.name))

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any] | None = None,
            stream: Any = None) -> list[np.ndarray]:
        result = state.fn(list(inputs), state.attrs, state.node)
        if isinstance(result, (list, tuple)):
            return [np.asarray(r) if not isinstance(r, np.ndarray) else r for r in result]
        return [result if isinstance(result, np.ndarray) else np.asarray(result)]


_SGEMM_OPS = {("", "Conv"), ("", "MatMul"), ("", "Gemm"), ("workbench", "FusedConv"), ("workbench", "FusedGemm")}


class SgemmTactic(NumpyTactic):
    """Conv/MatMul/Gemm with float32 accumulation in BLAS (the oracle accumulates in float64): the
    second CPU tactic of these ops, faster on large layers, within fp32 tolerance of the oracle."""
    name = "blas.sgemm"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (layer.domain, layer.op) in _SGEMM_OPS and precision in ("fp32", "tf32")

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any] | None = None,
            stream: Any = None) -> list[np.ndarray]:
        token = ACCUMULATE_F64.set(False)
        try:
            return super().run(state, inputs, outputs, stream)
        finally:
            ACCUMULATE_F64.reset(token)
