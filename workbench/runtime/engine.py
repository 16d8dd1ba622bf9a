"""`Engine`: a built network ready to run, save and load; `build` makes one from a Graph."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

import pandas as pd

from workbench.backends import get_backend
from workbench.builder import BuilderConfig, Network, build_network
from workbench.builder.precision_policy import needs_int8, uses_policy
from workbench.ir import Graph, load
from workbench.quant.errors import CalibrationError
from workbench.quant.insert_qdq import has_qdq
from workbench.runtime import plan
from workbench.runtime.calibration import quantize_int8
from workbench.runtime.context import ExecutionContext
from workbench.runtime.mixed_int8 import build_mixed_int8

__all__ = ["Engine", "build"]
log = logging.getLogger(__name__)


def build(graph: Graph | Any, config: BuilderConfig | None = None, *, accuracy_budget: float | None = None,
          eval_fn: Callable[["Engine"], float] | None = None) -> "Engine":
    """Build an engine from a graph (or anything `wb.load` accepts).

    Args:
        accuracy_budget: automatic mixed precision: the largest drop of `eval_fn` allowed against
            the FP32 engine; the most sensitive layers are kept at a higher precision until it holds
            (workbench/runtime/amp.py; `engine.amp_report()` says which and why).
        eval_fn: eval_fn(engine) -> metric, higher is better (e.g. accuracy in percent points). Used by
            accuracy_budget, and by sparsity="force" to report the accuracy change of pruning.

    Example:
        >>> engine = wb.build(wb.load("model.onnx"), wb.BuilderConfig(backend="cpu", batch_size=8))
        >>> amp = wb.build(graph, wb.BuilderConfig(precision="int8", calibration_data=data),
        ...                accuracy_budget=0.5, eval_fn=lambda e: 100 * accuracy(predict(e, x, 32), y))
    """
    if not isinstance(graph, Graph):
        graph = load(graph)
    config = config or BuilderConfig()
    if accuracy_budget is not None:
        from workbench.runtime.amp import build_within_budget       # amp builds its engines with this function
        return build_within_budget(graph, config, accuracy_budget, eval_fn)
    if config.sparsity == "force":
        from workbench.runtime.pruned_build import build_pruned
        return build_pruned(graph, config, eval_fn)
    if eval_fn is not None:
        log.warning("build: eval_fn is used by accuracy_budget= and sparsity='force' only; ignored")
    if uses_policy(config) and needs_int8(config):
        return Engine(build_mixed_int8(graph, config))
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

    def create_context(self, *, cuda_graph: bool | None = None):
        """A context to run the engine: its own activation memory (and, on the GPU, stream and
        CUDA graph), so several contexts of one engine run safely in different threads.

        Args:
            cuda_graph: capture the whole run as a CUDA graph (GPU engines; default: on for static
                shapes when every tactic can be captured).
        """
        if self.network.backend == "cuda":
            from workbench.runtime.cuda_context import CudaExecutionContext
            return CudaExecutionContext(self, cuda_graph=cuda_graph)
        return ExecutionContext(self)

    @property
    def build_log(self) -> pd.DataFrame:
        """The autotuner's log, one row per layer: candidates, their times, the choice and why."""
        columns = ["layer", "op", "precision", "candidates", "times_ms", "choice", "reason", "cached", "rejected"]
        return pd.DataFrame(self.meta.get("build_log", []), columns=columns)

    @property
    def memory(self) -> dict:
        """Activation arena (planned by lifetime) against the naive sum of all activations, in bytes;
        with parallel streams (BuilderConfig.max_streams), how many and how many layers run off the main one."""
        plan = self.meta.get("memory") or {}
        report = {k: plan.get(k) for k in ("arena_bytes", "naive_bytes", "ratio", "tensors")}
        if plan.get("streams"):
            report["streams"] = {k: plan["streams"][k] for k in ("count", "parallel_layers")}
        return report

    def tensor_dtypes(self) -> dict[str, str]:
        return {name: t["dtype"] for name, t in (self.meta.get("tensors") or {}).items()}

    def tensor_shapes(self, batch: int | None = None) -> dict[str, tuple | None]:
        """Every activation's shape at `batch` (None: the batch the engine was tuned at). Dims that
        grow with the batch are interpolated between the tuned and the largest batch."""
        opt = self.meta.get("batch")
        result = {}
        for name, t in (self.meta.get("tensors") or {}).items():
            shape, big = t["shape"], t.get("max_shape")
            if shape is None:
                result[name] = None
            elif batch is None or opt is None or big is None or batch == opt or self.profile.max == opt:
                result[name] = tuple(shape)
            else:
                span = self.profile.max - opt
                result[name] = tuple(s + (b - s) * (batch - opt) // span for s, b in zip(shape, big))
        return result

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

    def precision_report(self) -> pd.DataFrame:
        """One row per layer: its precision and why (fastest of the allowed set, strict, an override,
        kept in fp32 for a reason, a reformat at a precision boundary), with the times compared."""
        from workbench.runtime.amp import precision_report
        return precision_report(self)

    def amp_report(self) -> pd.DataFrame:
        """Automatic mixed precision (`wb.build(..., accuracy_budget=)`): the layers kept and why."""
        from workbench.runtime.amp import amp_report
        return amp_report(self)

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
