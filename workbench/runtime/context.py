"""`ExecutionContext`: one engine's per-run state. It prepares every layer's tactic once, then
each `run` checks the feeds, executes layers in order and frees each activation after its
last reader."""
from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from workbench.builder.network import IOSpec
from workbench.errors import ExecutionError, InputError

if TYPE_CHECKING:
    from workbench.runtime.engine import Engine

__all__ = ["ExecutionContext"]
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

    def run(self, feeds: Mapping[str, Any], *, keep: set[str] | None = None) -> dict[str, np.ndarray]:
        """Run the engine on `feeds` (input name -> numpy array) and return outputs by name.

        Args:
            keep: names of intermediate tensors to return as well (for layer-wise comparison).
        """
        # activations go in the first map; weights are read through, never copied per run
        env = collections.ChainMap(self._check_feeds(feeds), self.engine.weights)
        keep = set(keep or ()) | {o.name for o in self.engine.outputs}
        with np.errstate(all="ignore"):
            for index, (layer, tactic, state) in enumerate(self._steps):
                args = [env[name] if name else None for name in layer.inputs]
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
                for name, value in zip(layer.outputs, results):
                    if name:
                        env[name] = value
                for name in self._last_use.get(index, ()):
                    if name not in keep:
                        env.pop(name, None)
        return {name: np.asarray(env[name]) for name in keep if name in env}

    def _check_feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        specs = {s.name: s for s in self.engine.inputs}
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
        checked = {}
        for name, spec in specs.items():
            checked[name] = _check_one(spec, feeds[name], self.engine.profile)
        return checked


def _check_one(spec: IOSpec, value: Any, profile) -> np.ndarray:
    if isinstance(value, np.generic):          # numpy scalars are 0-d tensors
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise InputError(f"input {spec.name!r}: expected a numpy array, got {type(value).__name__}")
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
