"""`ExecutionContext`: one engine's per-run state. It prepares every layer's tactic once, then
each `run` checks the feeds, executes layers in order and frees each activation after its
last reader."""
from __future__ import annotations

import collections
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from workbench.builder.network import IOSpec
from workbench.errors import ExecutionError, InputError

if TYPE_CHECKING:
    from workbench.runtime.engine import Engine

__all__ = ["ExecutionContext", "check_feeds", "check_feed", "batch_of"]
log = logging.getLogger(__name__)


class ExecutionContext:
    """Runs an engine. Create with `engine.create_context()`.

    Example:
        >>> ctx = engine.create_context()
        >>> ctx.run({"input": x})["logits"].shape
        (8, 10)
    """

    def __init__(self, engine: "Engine"):
        self.engine = engine
        backend = engine.backend
        self._steps = []
        for layer in engine.layers:
            tactic = backend.tactic(layer.tactic, layer)
            self._steps.append((layer, tactic, tactic.prepare(layer, engine.weights)))
        self._last_use = _last_uses(engine)
        self._layer_ms: list[list[float]] | None = None     # per-layer times, while profiling

    def profile(self, feeds: Mapping[str, Any], iters: int = 10, warmup: int = 1):
        """Per-layer times (median of `iters` runs) as a DataFrame: layer, op, tactic, precision,
        shapes, time_ms, percent, flops, bytes, tflops, gbps."""
        from workbench.runtime.profiler import layer_table
        for _ in range(warmup):
            self.run(feeds)
        self._layer_ms = [[] for _ in self._steps]
        try:
            for _ in range(iters):
                self.run(feeds)
            return layer_table(self.engine, self._layer_ms, batch_of(self.engine, feeds))
        finally:
            self._layer_ms = None

    def run(self, feeds: Mapping[str, Any], *, keep: set[str] | None = None) -> dict[str, np.ndarray]:
        """Run the engine on `feeds` (input name -> numpy array) and return outputs by name.

        Args:
            keep: names of intermediate tensors to return as well (for layer-wise comparison).
        """
        # activations go in the first map; weights are read through, never copied per run
        feeds = {k: v.get() if hasattr(v, '__cuda_array_interface__') else v for k, v in check_feeds(self.engine, feeds).items()}
        env = collections.ChainMap(feeds, self.engine.weights)
        keep = set(keep or ()) | {o.name for o in self.engine.outputs}
        with np.errstate(all="ignore"):
            for index, (layer, tactic, state) in enumerate(self._steps):
                args = [env[name] if name else None for name in layer.inputs]
                started = time.perf_counter()
                try:
                    results = tactic.run(state, args, None, None)
                except Exception as exc:
                    shapes = ", ".join(f"{n}:{getattr(a, 'shape', None)}" for n, a in zip(layer.inputs, args))
                    raise ExecutionError(
                        f"layer {layer.name!r} ({layer.qualified_op}, tactic {layer.tactic}, from nodes "
                        f"{layer.source_nodes}) failed on inputs [{shapes}]: {type(exc).__name__}: {exc}") from exc
                if len(results) < sum(1 for o in layer.outputs if o):
                    raise ExecutionError(f"layer {layer.name!r} ({layer.qualified_op}) produced {len(results)} "
                                         f"outputs, the model expects {len(layer.outputs)}")
                if self._layer_ms is not None:
                    self._layer_ms[index].append((time.perf_counter() - started) * 1e3)
                for name, value in zip(layer.outputs, results):
                    if name:
                        env[name] = value
                for name in self._last_use.get(index, ()):
                    if name not in keep:
                        env.pop(name, None)
        return {name: np.asarray(env[name]) for name in keep if name in env}


def check_feeds(engine: "Engine", feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Every input present, nothing extra, each with the right dtype and shape (numpy or CuPy)."""
    specs = {s.name: s for s in engine.inputs}
    missing = [n for n in specs if n not in feeds]
    extra = [n for n in feeds if n not in specs]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{n!r} ({specs[n].describe()})" for n in missing))
        if extra:
            parts.append(f"unexpected {extra}")
        raise InputError(f"feeds do not match the engine's inputs: {'; '.join(parts)}; "
                         f"expected exactly {list(specs)}")
    return {name: check_feed(spec, feeds[name], engine.profile) for name, spec in specs.items()}


def check_feed(spec: IOSpec, value: Any, profile) -> Any:
    if isinstance(value, np.generic):          # numpy scalars are 0-d tensors
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) and not hasattr(value, "__cuda_array_interface__"):
        raise InputError(f"input {spec.name!r}: expected a numpy (or CuPy) array, got {type(value).__name__}")
    if value.dtype != spec.dtype:
        raise InputError(f"input {spec.name!r}: expected dtype {spec.dtype.name}, got {value.dtype.name}")
    if spec.shape is None:
        return value
    if value.ndim != len(spec.shape):
        raise InputError(f"input {spec.name!r}: expected rank {len(spec.shape)} shape {spec.describe()}, "
                         f"got shape {value.shape}")
    for axis, (want, got) in enumerate(zip(spec.shape, value.shape)):
        if axis == spec.batch_axis and profile is not None:
            if not profile.accepts(got):
                raise InputError(f"input {spec.name!r}: batch {got} is outside the engine's profile "
                                 f"[{profile.min}, {profile.max}] (shape {value.shape})")
        elif want is not None and want != got:
            raise InputError(f"input {spec.name!r}: expected shape {spec.describe()}, got {value.shape} "
                             f"(dimension {axis}: expected {want}, got {got})")
    return value


def batch_of(engine: "Engine", feeds: Mapping[str, Any]) -> int | None:
    for spec in engine.inputs:
        if spec.batch_axis is not None and spec.name in feeds:
            return int(feeds[spec.name].shape[spec.batch_axis])
    return None


def _last_uses(engine: "Engine") -> dict[int, list[str]]:
    """Layer index -> activations no later layer reads (weights are never freed)."""
    last: dict[str, int] = {}
    for index, layer in enumerate(engine.layers):
        for name in layer.inputs:
            if name and name not in engine.weights:
                last[name] = index
    by_layer: dict[int, list[str]] = {}
    for name, index in last.items():
        by_layer.setdefault(index, []).append(name)
    return by_layer
