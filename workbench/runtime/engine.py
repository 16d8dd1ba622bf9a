"""`Engine`: a built network ready to run, save and load; `build` makes one from a Graph."""
from __future__ import annotations

import os
from typing import Any

import pandas as pd

from workbench.backends import get_backend
from workbench.builder import BuilderConfig, Network, build_network
from workbench.ir import Graph, load
from workbench.quant.errors import CalibrationError
from workbench.quant.insert_qdq import has_qdq
from workbench.runtime import plan
from workbench.runtime.calibration import quantize_int8
from workbench.runtime.context import ExecutionContext

__all__ = ["Engine", "build"]


def build(graph: Graph | Any, config: BuilderConfig | None = None) -> "Engine":
    """Build an engine from a graph (or anything `wb.load` accepts).

    Example:
        >>> engine = wb.build(wb.load("model.onnx"), wb.BuilderConfig(backend="cpu", batch_size=8))
    """
    if not isinstance(graph, Graph):
        graph = load(graph)
    config = config or BuilderConfig()
    if config.precision == "int8":
        graph = _quantize(graph, config)
    return Engine(build_network(graph, config))


def _quantize(graph: Graph, config: BuilderConfig) -> Graph:
    """INT8: calibrate (or read the cache, or honour the model's own Q/DQ) and insert Q/DQ, which the
    CPU kernels execute exactly (integer values, float64 accumulation, one requantization)."""
    if config.calibration_data is None and config.calibration_cache is None and not has_qdq(graph):
        raise CalibrationError(
            f"{graph.source}: precision='int8' needs calibration: pass BuilderConfig(calibration_data=...) "
            "(an iterable of feed dicts, ~500 representative samples), or calibration_cache= a table written "
            "for this model, or build a model that already holds QuantizeLinear/DequantizeLinear nodes")
    quantized, _ = quantize_int8(graph, config.calibration_data, calibrator=config.calibrator,
                                 cache=config.calibration_cache)
    return quantized


class Engine:
    """Layers bound to tactics plus their weights: what runs, what is saved to a .wbplan."""

    def __init__(self, network: Network):
        self.network = network
        self.backend = get_backend(network.backend)

    # the network's facts, read-only
    layers = property(lambda self: self.network.layers)
    weights = property(lambda self: self.network.weights)
    inputs = property(lambda self: self.network.inputs)
    outputs = property(lambda self: self.network.outputs)
    profile = property(lambda self: self.network.profile)
    precision = property(lambda self: self.network.precision)
    meta = property(lambda self: self.network.meta)

    def create_context(self) -> ExecutionContext:
        return ExecutionContext(self)

    def save(self, path: str | os.PathLike) -> None:
        """Write a .wbplan atomically: a failure leaves no half-written file behind."""
        plan.write(self.network, path)

    def to_bytes(self) -> bytes:
        return plan.dumps(self.network)

    @classmethod
    def load(cls, path_or_bytes: str | os.PathLike | bytes) -> "Engine":
        """Read a .wbplan, checking its format version, checksums and device."""
        return cls(plan.read(path_or_bytes))

    @property
    def weight_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())

    def to_dataframe(self) -> pd.DataFrame:
        """One row per layer (TREx style): name, op, tactic, precision, fused originals, shapes."""
        return pd.DataFrame({
            "layer": [l.name for l in self.layers],
            "op": [l.qualified_op for l in self.layers],
            "tactic.name": [l.tactic for l in self.layers],
            "precision": [l.precision for l in self.layers],
            "source_nodes": [list(l.source_nodes) for l in self.layers],
            "output_shapes": [list(l.output_shapes) for l in self.layers],
        })

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}: {s.describe()}" for s in self.inputs)
        prof = f", batch {self.profile.min}..{self.profile.max}" if self.profile else ""
        return (f"<Engine {self.meta.get('model', '')!r}: {len(self.layers)} layers on {self.network.backend}, "
                f"{self.precision}{prof}, inputs [{ins}], {self.weight_bytes / 1e6:.2f} MB weights>")
