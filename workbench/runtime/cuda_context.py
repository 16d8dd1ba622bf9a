"""`CudaExecutionContext`: runs a CUDA engine. Everything is allocated once: one arena holds every
activation at the offsets the memory planner chose, weights are uploaded when the context is made.
With static shapes the whole run is captured as a CUDA graph after one warm-up run and replayed:
no Python per layer, no launch gaps. Each context owns its stream, arena and graph, and a lock, so
several contexts of one engine run in different threads.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from workbench.backends.cuda.device import cupy
from workbench.errors import ExecutionError
from workbench.runtime.context import batch_of, check_feeds

if TYPE_CHECKING:
    from workbench.runtime.engine import Engine

__all__ = ["CudaExecutionContext"]
log = logging.getLogger(__name__)


_UPLOAD_LOCK = threading.Lock()


def _device_weights(engine: "Engine") -> dict[str, Any]:
    """The engine's weights on the GPU, uploaded once and shared by all its contexts (they only
    read them)."""
    with _UPLOAD_LOCK:
        if getattr(engine, "_device_weights", None) is None:
            cp = cupy()
            engine._device_weights = {name: cp.asarray(array) for name, array in engine.weights.items()}
            cp.cuda.Device().synchronize()
        return engine._device_weights


class CudaExecutionContext:
    def __init__(self, engine: "Engine", cuda_graph: bool | None = None):
        cp = cupy()
        self.engine = engine
        self.stream = cp.cuda.Stream(non_blocking=True)
        plan = engine.meta.get("memory") or {}
        self._offsets: dict[str, int] = plan.get("offsets", {})
        self.arena = cp.empty(max(int(plan.get("arena_bytes") or 0), 256), dtype=cp.uint8)
        self.weights = _device_weights(engine)
        with self.stream:
            self._steps = []
            for layer in engine.layers:
                tactic = engine.backend.tactic(layer.tactic, layer)
                self._steps.append((layer, tactic, tactic.prepare(layer, engine.weights)))
        self.stream.synchronize()
        static = engine.profile is None or engine.profile.min == engine.profile.max
        blockers = [l.name for l, t, _ in self._steps if not getattr(t, "capturable", True)]
        self.uses_cuda_graph = static and not blockers if cuda_graph is None else bool(cuda_graph)
        if cuda_graph is None and static and blockers:
            log.info("no CUDA graph: layers %s run host tactics", blockers[:5])
        self._graph = None
        self._views: dict[int | None, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._streams = _ParallelStreams.of(plan.get("streams"), len(self._steps))

    # -- memory -----------------------------------------------------------------------------
    def _tensors(self, batch: int | None) -> dict[str, Any]:
        """Arena views of every activation at this batch (built once per batch), weights, and views."""
        if batch not in self._views:
            cp = cupy()
            shapes, dtypes = self.engine.tensor_shapes(batch), self.engine.tensor_dtypes()
            env: dict[str, Any] = dict(self.weights)
            for name, offset in self._offsets.items():
                shape, dtype = shapes.get(name), dtypes.get(name)
                if shape is None or not dtype:
                    continue
                memptr = self.arena.data + int(offset)
                env[name] = cp.ndarray(tuple(shape), dtype=np.dtype(dtype), memptr=memptr)
            for layer, tactic, state in self._steps:
                if tactic.is_view:
                    out_shapes = [shapes.get(n) for n in layer.outputs]
                    args = [env.get(n) if n else None for n in layer.inputs]
                    env.update(zip(layer.outputs, tactic.view(state, args, out_shapes)))
            self._views[batch] = env
        return self._views[batch]

    # -- running ----------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, Any], *, keep: set[str] | None = None) -> dict[str, Any]:
        """Run on `feeds` (numpy or CuPy arrays). With numpy inputs the outputs are numpy copies;
        with CuPy inputs they are CuPy arrays in this context's memory, valid until its next run
        (copy them to keep them)."""
        checked = check_feeds(self.engine, feeds)
        on_device = all(hasattr(v, "__cuda_array_interface__") for v in checked.values())
        batch = batch_of(self.engine, checked)
        caller = cupy().cuda.get_current_stream()
        with self._lock, self.stream:
            env = self._tensors(batch)
            if self.uses_cuda_graph and not keep and self._graph is None:
                self._copy_in(env, checked, caller)
                self._capture(env)             # its warm-up run overwrites dead inputs: copy again
            self._copy_in(env, checked, caller)
            kept = {}
            if keep:
                kept = self._run_eager(env, keep)
            elif self.uses_cuda_graph:
                self._graph.launch(self.stream)
            else:
                self._run_eager(env)
            outputs = {o.name: env[o.name] for o in self.engine.outputs}
            if on_device:
                # the caller's stream waits for this run, so what it does next with the outputs is
                # ordered after it, with no host synchronization (CUDA stream semantics)
                done = cupy().cuda.Event(disable_timing=True)
                done.record(self.stream)
                caller.wait_event(done)
                return {**outputs, **{k: cupy().asarray(v) for k, v in kept.items()}}
            result = {k: v.get(stream=self.stream) for k, v in outputs.items()}
            self.stream.synchronize()
            return {**result, **kept}

    def _run_eager(self, env: dict[str, Any], keep: set[str] | None = None, timings: list | None = None) -> dict:
        kept = {}
        cp = cupy()
        # independent branches on their streams, unless layers are read back or timed one by one
        parallel = self._streams if self._streams is not None and not keep and timings is None else None
        if parallel is not None:
            parallel.fork(self.stream)
        for index, (layer, tactic, state) in enumerate(self._steps):
            if tactic.is_view:                      # its output aliases its input: nothing to run
                kept.update({n: env[n].get(stream=self.stream) for n in layer.outputs if keep and n in keep})
                continue
            args = [env.get(n) if n else None for n in layer.inputs]
            outs = [env.get(n) for n in layer.outputs if n]
            stream = self.stream if parallel is None else parallel.before(index, self.stream)
            if timings is not None:
                start, stop = cp.cuda.Event(), cp.cuda.Event()
                start.record(self.stream)
            try:
                with stream:
                    tactic.run(state, args, outs, stream)
                if parallel is not None:
                    parallel.after(index, stream)
            except Exception as exc:
                shapes = ", ".join(f"{n}:{getattr(a, 'shape', None)}" for n, a in zip(layer.inputs, args))
                raise ExecutionError(f"layer {layer.name!r} ({layer.qualified_op}, tactic {layer.tactic}, from nodes "
                                     f"{layer.source_nodes}) failed on inputs [{shapes}]: {type(exc).__name__}: {exc}") from exc
            if timings is not None:
                stop.record(self.stream)
                timings.append((index, start, stop))
            for name in layer.outputs:
                if keep and name in keep:
                    kept[name] = env[name].get(stream=self.stream)
        if parallel is not None:
            parallel.join(self.stream)
        return kept

    def _copy_in(self, env: dict[str, Any], feeds: Mapping[str, Any], caller=None) -> None:
        if caller is not None and caller is not self.stream:
            ready = cupy().cuda.Event(disable_timing=True)     # device inputs made on the caller's stream
            ready.record(caller)
            self.stream.wait_event(ready)
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                env[name].set(value, stream=self.stream)
            else:
                cupy().copyto(env[name], value)

    def _capture(self, env: dict[str, Any]) -> None:
        """Warm up once (lazy plans, library workspaces, first-run autotuning happen outside the
        capture), then record the whole run as one CUDA graph."""
        self._run_eager(env)
        self.stream.synchronize()
        self.stream.begin_capture()
        try:
            self._run_eager(env)
        finally:
            self._graph = self.stream.end_capture()
        self._graph.upload(self.stream)

    def profile(self, feeds: Mapping[str, Any], iters: int = 10, warmup: int = 2):
        """Per-layer GPU times (CUDA events around each layer, eager, median of `iters`) as a
        DataFrame: layer, op, tactic, precision, shapes, time_ms, percent, flops, bytes, tflops, gbps."""
        from workbench.runtime.profiler import layer_table
        checked = check_feeds(self.engine, feeds)
        batch = batch_of(self.engine, checked)
        caller = cupy().cuda.get_current_stream()
        samples = [[] for _ in self._steps]
        with self._lock, self.stream:
            env = self._tensors(batch)
            for _ in range(warmup):
                self._copy_in(env, checked, caller)   # every run reuses the bytes of dead inputs
                self._run_eager(env)
            for _ in range(iters):
                timings: list = []
                self._copy_in(env, checked, caller)
                self._run_eager(env, timings=timings)
                self.stream.synchronize()
                for index, start, stop in timings:
                    samples[index].append(cupy().cuda.get_elapsed_time(start, stop))
        return layer_table(self.engine, samples, batch)


class _ParallelStreams:
    """The side streams of an engine built with max_streams > 1 (builder/streams.py): each layer runs
    on its stream after waiting for the events of its producers on other streams. Fork and join with
    the context's stream are events too, so a CUDA-graph capture turns them into graph edges."""

    def __init__(self, stream_of: list[int], waits: list[list[int]]):
        cp = cupy()
        self.stream_of, self.waits = stream_of, waits
        self.side = {s: cp.cuda.Stream(non_blocking=True) for s in sorted(set(stream_of)) if s}
        waited = {p for w in waits for p in w}
        self.events = {i: cp.cuda.Event(disable_timing=True) for i in waited}
        self.ends = {s: cp.cuda.Event(disable_timing=True) for s in self.side}
        self.start = cp.cuda.Event(disable_timing=True)

    @classmethod
    def of(cls, plan: dict | None, layers: int) -> "_ParallelStreams | None":
        if not plan or plan.get("count", 1) <= 1 or len(plan.get("stream", ())) != layers:
            return None
        return cls(plan["stream"], plan["waits"])

    def fork(self, main) -> None:
        self.start.record(main)
        for side in self.side.values():
            side.wait_event(self.start)

    def before(self, index: int, main):
        stream = self.side.get(self.stream_of[index], main)
        for producer in self.waits[index]:
            stream.wait_event(self.events[producer])
        return stream

    def after(self, index: int, stream) -> None:
        if index in self.events:
            self.events[index].record(stream)

    def join(self, main) -> None:
        for s, side in self.side.items():
            self.ends[s].record(side)
            main.wait_event(self.ends[s])
