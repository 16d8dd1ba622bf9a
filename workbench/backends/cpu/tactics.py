"""CPU tactics. `NumpyTactic` runs the registered numpy kernel of an op; it is both the CPU
backend's default way to run a layer and the reference every other tactic is checked against."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cpu.registry import KernelFn, NodeInfo, lookup

__all__ = ["NumpyTactic"]


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
