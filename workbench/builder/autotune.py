"""The autotuner: for each layer, time every tactic that can run it at the profile's shapes, refuse
those that disagree with the CPU oracle, keep the fastest, and remember the choice in a TimingCache.

    builder_level 0   first valid tactic, nothing timed (fastest build)
                  1   each candidate timed briefly
                  2   each candidate timed after warm-ups, median of several runs (default)
                  3   exhaustive: more warm-ups and runs
(the backend's `timing_repeats[level]` says how many: a GPU 3 warm-ups and 10 runs at level 2, the
host fewer, its runs being slow and steady).
A layer with a single candidate is not timed at any level. Inputs are random and not zeros;
weights are the layer's real weights. The log (one row per layer) says what was considered, how
long each candidate took, what was chosen and why.
"""
from __future__ import annotations

import dataclasses
import logging
import zlib
from typing import Callable

import numpy as np

from workbench.backends.base import QUANTIZED_GRIDS, Layer
from workbench.builder.oracle import check_outputs, oracle_outputs
from workbench.builder.timing_cache import TimingCache, TimingEntry, layer_signature
from workbench.errors import BuildError

__all__ = ["TensorSpecs", "LogRow", "autotune", "time_layer", "oracle_rows"]
log = logging.getLogger(__name__)

TensorSpecs = dict[str, tuple[tuple, str]]          # tensor name -> (shape, numpy dtype name)


@dataclasses.dataclass
class LogRow:
    layer: str
    op: str
    precision: str
    candidates: list[str]
    times_ms: dict[str, float]
    choice: str
    reason: str
    cached: bool = False
    rejected: dict[str, str] = dataclasses.field(default_factory=dict)


def autotune(layers: list[Layer], weights: dict[str, np.ndarray], specs: TensorSpecs, backend, *,
             level: int = 2, cache: TimingCache | None = None, max_workspace_bytes: int | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> list[LogRow]:
    """Set `layer.tactic` on every layer; return the build log."""
    cache = cache if cache is not None else TimingCache()
    rows: list[LogRow] = []
    bar = _progress_bar(len(layers), progress, backend.name)
    for index, layer in enumerate(layers):
        if progress is not None:
            progress(index, len(layers), layer.name)
        rows.append(_tune_one(layer, weights, specs, backend, level, cache, max_workspace_bytes))
        layer.tactic = rows[-1].choice
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if progress is not None:
        progress(len(layers), len(layers), "")
    return rows


def _candidates(layer: Layer, backend, max_workspace_bytes: int | None) -> list:
    found = backend.tactics(layer)
    if max_workspace_bytes is not None:
        found = [t for t in found if getattr(t, "workspace_bytes", lambda _: 0)(layer) <= max_workspace_bytes]
    if not found:
        raise BuildError(f"layer {layer.name!r} ({layer.qualified_op}, {layer.precision}, from nodes "
                         f"{layer.source_nodes}): no {backend.name} tactic can run it"
                         + (f" within max_workspace_bytes={max_workspace_bytes}" if max_workspace_bytes is not None else ""))
    return found


def _tune_one(layer, weights, specs, backend, level, cache, max_workspace_bytes) -> LogRow:
    candidates = _candidates(layer, backend, max_workspace_bytes)
    names = [t.name for t in candidates]
    row = LogRow(layer.name, layer.qualified_op, layer.precision, names, {}, names[0], "")
    if level == 0:
        for tactic in candidates:            # valid = it can prepare this layer (weights, shapes)
            try:
                tactic.prepare(layer, weights)
            except Exception as exc:
                row.rejected[tactic.name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
                continue
            row.choice = tactic.name
            break
        row.reason = "builder_level 0: first valid tactic, nothing timed"
        return row
    if len(candidates) == 1:
        row.reason = "only candidate"
        return row
    input_specs = [specs.get(n) if n else None for n in layer.inputs]
    digest, key = cache.digest(getattr(backend, "device", backend.name), str(getattr(backend, "version", "")),
                               layer_signature(layer, input_specs), layer.precision)
    entry = cache.get(digest)
    if entry is not None and entry.tactic in names:
        row.times_ms, row.choice, row.rejected, row.cached = dict(entry.times_ms), entry.tactic, dict(entry.rejected), True
        row.reason = "timing cache hit"
        return row
    unknown = [n for n in layer.inputs if n and n not in weights and not _static(specs.get(n))]
    if backend.writes_into_outputs:          # its tactics fill outputs allocated beforehand
        unknown += [n for n, shape, dtype in zip(layer.outputs, layer.output_shapes, layer.output_dtypes)
                    if n and not _static((shape, dtype))]
    if unknown:
        row.reason = f"not timed: the shape or dtype of {unknown[0]!r} is not static; first valid tactic"
        return row
    integral = [n for n in layer.inputs if n and n not in weights and _index_like(np.dtype(specs[n][1]))]
    if integral:          # indices and shapes: random values would be out of range, not representative
        row.reason = f"not timed: integer input {integral[0]!r} holds data-dependent values; first valid tactic"
        return row
    entry = _measure(layer, weights, specs, backend, candidates, level)
    entry.key = key
    cache.put(digest, entry)
    row.times_ms, row.choice, row.rejected = entry.times_ms, entry.tactic, entry.rejected
    row.reason = (f"fastest of {len(entry.times_ms)} valid" if len(entry.times_ms) > 1 else "only valid candidate") \
        + (f"; rejected {len(entry.rejected)}" if entry.rejected else "")
    return row


def _measure(layer, weights, specs, backend, candidates, level) -> TimingEntry:
    inputs = _random_inputs(layer, weights, specs, backend)
    backend.synchronize()             # made on the default stream; the tactics run on their own
    rows, sliced = oracle_rows(layer, weights, inputs)
    host = [None if a is None else weights[layer.inputs[i]] if layer.inputs[i] in weights
            else backend.download(a[:rows] if i in sliced else a) for i, a in enumerate(inputs)]
    want = oracle_outputs(layer, weights, host)
    times, rejected = {}, {}
    stream = backend.stream()
    for tactic in candidates:
        try:
            state = tactic.prepare(layer, weights)
            # prepare's device work (weight re-layout, casts) runs on the default stream, which a
            # non-blocking tactic stream does not wait for: without this, big weights were read half
            # converted and good tactics refused (gemm_tc at 4096x4096, rel L2 1.4 to 2.7e3)
            backend.synchronize()
            run = _runner(tactic, state, layer, inputs, backend, stream)
            produced = run()
            if stream is not None:        # the tactic ran on its own stream: wait before reading back
                stream.synchronize()
            got = [backend.download(o[:rows] if rows else o) for o in produced]
            ok, err = check_outputs(layer, got, want)
            if not ok:
                rejected[tactic.name] = f"disagrees with the CPU oracle: rel L2 {err:.3g}"
                continue
            times[tactic.name] = _median_ms(run, backend, stream, level)
        except Exception as exc:                       # a tactic that fails on this shape is not a candidate
            rejected[tactic.name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    if not times:
        raise BuildError(f"layer {layer.name!r} ({layer.qualified_op}, {layer.precision}): every tactic was refused: "
                         + "; ".join(f"{k}: {v}" for k, v in rejected.items()))
    best = min(times, key=times.get)
    log.debug("%s: %s", layer.name, {k: round(v, 4) for k, v in times.items()})
    return TimingEntry(best, {k: round(v, 6) for k, v in times.items()}, rejected, {})


# ops whose output row i depends only on input row i (dim 0): the oracle checks a device tactic on
# the first rows only, so tuning at batch 256 does not wait for a float64 CPU run of the whole batch
_ROW_WISE = {"Conv", "FusedConv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Relu",
             "Sigmoid", "Tanh", "Clip", "Add", "Mul", "Sub", "Div", "PointwiseChain", "Reformat", "Cast",
             "MatMul", "FusedGemm", "Softmax", "FusedLayerNorm", "LayerNormalization", "FusedAttention",
             "Concat", "ConcatView", "Split", "SplitView", "BatchNormalization", "RoundTF32"}
_ORACLE_ROWS = 2
_DATA_INPUTS = {"Conv": (0,), "FusedConv": (0, 3), "MatMul": (0,), "FusedGemm": (0, 3)}   # the rest are weights


def oracle_rows(layer: Layer, weights, inputs) -> tuple[int, set[int]]:
    """How many leading rows the oracle checks (0 = all of them), and which inputs are sliced."""
    sliced = {i for i, (n, a) in enumerate(zip(layer.inputs, inputs)) if n and n not in weights and a is not None
              and i in _DATA_INPUTS.get(layer.op, range(len(inputs)))}
    if layer.op not in _ROW_WISE or not sliced or layer.op == "Gemm" or layer.attrs.get("transA", 0):
        return 0, set()
    if layer.op in ("MatMul", "FusedGemm") and layer.inputs[1] not in weights and inputs[1].ndim > 2:
        return 0, set()                        # batched by another activation: rows pair up across both
    first = inputs[min(sliced)]
    if first.ndim == 0 or layer.attrs.get("axis", 1) in (0, -first.ndim):
        return 0, set()
    rows = first.shape[0]
    outs = [sh for sh in layer.output_shapes if sh]
    if rows <= _ORACLE_ROWS or any(inputs[i].ndim == 0 or inputs[i].shape[0] != rows for i in sliced) \
            or any(sh[0] != rows for sh in outs) or len(outs) != len([o for o in layer.outputs if o]):
        return 0, set()
    return _ORACLE_ROWS, sliced


def _static(spec) -> bool:
    return spec is not None and spec[0] is not None and all(isinstance(d, int) for d in spec[0]) and bool(spec[1])


def _runner(tactic, state, layer, inputs, backend, stream) -> Callable[[], list]:
    shapes = [tuple(sh) for sh in layer.output_shapes]
    if getattr(tactic, "is_view", False):
        return lambda: tactic.view(state, inputs, shapes)
    if not backend.writes_into_outputs:
        return lambda: tactic.run(state, inputs, None, None)
    outputs = [backend.empty(sh, np.dtype(dt)) for sh, dt in zip(shapes, layer.output_dtypes)]

    def run():
        with stream:
            tactic.run(state, inputs, outputs, stream)
        return outputs
    return run


def _median_ms(run: Callable, backend, stream, level: int) -> float:
    warmups, repeats = backend.timing_repeats[level]
    return backend.measure(run, stream, warmups, repeats)


def _index_like(dtype: np.dtype) -> bool:
    """Integer data whose random values would not be representative (indices, shapes, masks); int8
    and uint8 are quantized activations, any value on their grid is."""
    return dtype.kind in "biu" and dtype.name not in QUANTIZED_GRIDS


def _random_inputs(layer: Layer, weights: dict[str, np.ndarray], specs: TensorSpecs, backend) -> list:
    """Real weights (on the backend); activations random and nonzero, made on the backend and
    seeded by the layer's name, so a rebuild tunes on the same values."""
    seed = zlib.crc32(layer.name.encode())
    out = []
    for index, name in enumerate(layer.inputs):
        if not name:
            out.append(None)
        elif name in weights:
            out.append(backend.upload(weights[name]))
        else:
            if not _static(specs.get(name)):
                raise BuildError(f"layer {layer.name!r}: cannot tune without the static shape of input {name!r}")
            shape, dtype = specs[name]
            out.append(backend.random(tuple(shape), np.dtype(dtype), seed + index))
    return out


def time_layer(layer: Layer, weights: dict[str, np.ndarray], specs: TensorSpecs, backend,
               level: int = 2, cache: TimingCache | None = None) -> tuple[str, float]:
    """(fastest valid tactic, its median ms) for one layer as it stands (its precision): the
    per-layer precision choice compares these across allowed precisions."""
    row = _tune_one(layer, weights, specs, backend, max(level, 1), cache or TimingCache(), None)
    if row.times_ms:
        return row.choice, row.times_ms[row.choice]
    if row.reason != "only candidate":        # shapes not static, integer inputs: nothing to time
        raise BuildError(f"layer {layer.name!r}: {row.reason}")
    entry = _measure(layer, weights, specs, backend, [backend.tactic(row.choice, layer)], max(level, 1))
    return entry.tactic, entry.times_ms[entry.tactic]


def _progress_bar(total: int, progress, backend: str):
    if progress is not None or total < 50:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"tuning {backend} layers", unit="layer", leave=False)
