"""Post-training INT8 quantization: calibrate the FP32 model, then insert Q/DQ (TensorRT's PTQ path).

Why two steps and a cache: INT8 needs every activation's range, and only running representative data
through the FP32 model shows it (~500 samples). That is the slow part, so its result, a
`CalibrationTable`, is cached in a file tied to the model's sha256: a rebuild (another batch size,
other tactics) reads it back instead of calibrating again, and a table of another model is refused.
A model that already carries Q/DQ nodes (quantization-aware training) needs neither: it is explicitly
quantized and its scales win.

It lives in runtime, not quant, because calibrating means running an FP32 engine: quant holds the
pure pieces (calibrators, tables, Q/DQ insertion), this module drives them with an engine, and
`wb.build(..., BuilderConfig(precision="int8"))` calls it before the builder sees the graph.

    qgraph, table = quantize_int8(graph, batches, calibrator="entropy", cache="digits.calib.json")
    engine = wb.build(qgraph, wb.BuilderConfig(profile=(1, 32, 64)))
"""
from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from workbench.builder import BuilderConfig, build_network
from workbench.ir import Graph
from workbench.passes.edit import STANDARD_DOMAINS, const_array
from workbench.quant.calibrate import Calibrator, calibrate, feed_iterator, make_calibrator
from workbench.quant.errors import CalibrationError
from workbench.quant.insert_qdq import (QUANTIZABLE_OPS, calibration_tensors, check_qdq_opset, has_qdq,
                                        insert_qdq)
from workbench.quant.table import CalibrationTable, model_hash

__all__ = ["calibrate_graph", "quantize_int8", "explicit_table", "calibration_tensors", "insert_qdq", "has_qdq"]

logger = logging.getLogger(__name__)

_PROVIDE = ("provide an iterable of feed dicts {input name: numpy array} (a list, generator or "
            "DataLoader-like object), e.g. ~500 representative samples in batches of 32-64")


def calibrate_graph(graph: Graph, data: Iterable[Mapping] | Mapping | None,
                    calibrator: str | Calibrator = "entropy", *, cache: str | Path | None = None, batch_size: int | None = None,
                    progress: Callable[[int, int | None], None] | None = None,
                    ops=QUANTIZABLE_OPS) -> CalibrationTable:
    """Scales for every activation Q/DQ insertion needs, from an FP32 CPU run over `data` (or the cache).

    Args:
        graph: the FP32 model (optimized or not; the table is keyed by its tensor names).
        data: feed dicts, input name -> array with the batch first; batches may differ in size.
        calibrator: "entropy", "minmax", "percentile", or a Calibrator instance.
        cache: a calibration table file. If it exists and belongs to this model it is read and nothing
            runs (logged at INFO "calibration cache hit: <path>"); if it belongs to another model a
            CalibrationError names both hashes; otherwise the new table is written there.
        batch_size: split every feed into chunks of at most this many samples; then `data` may also be
            one dict of whole arrays, e.g. {"input": images}.
        progress: progress(done, total_or_None) after each batch.
        ops: the op types whose operands get scales.

    Example:
        >>> images, _ = digits_train(limit=500)
        >>> table = calibrate_graph(graph, {"input": images}, "entropy", batch_size=50)
        >>> table.num_samples, sorted(table.scales)[:2]
        (500, ['flatten', 'normalize'])
    """
    ops = (ops,) if isinstance(ops, str) else tuple(ops)
    digest = model_hash(graph.to_proto().SerializeToString())
    chosen = calibrator if isinstance(calibrator, Calibrator) else make_calibrator(calibrator)
    if cache is not None and Path(cache).exists():
        table = CalibrationTable.load(cache, expected_model_hash=digest)
        logger.info("calibration cache hit: %s", cache)
        if table.calibrator != chosen.describe():
            logger.warning("calibration cache %s was made by %s, not %s; using it (delete the file to "
                           "recalibrate)", cache, table.calibrator, chosen.describe())
        return table
    tensors = calibration_tensors(graph, ops)
    if not tensors:
        raise CalibrationError(f"{graph.name}: nothing to calibrate: no {'/'.join(ops)} node reads a float "
                               f"activation outside existing Q/DQ")
    feeds = _feeds(data, batch_size)
    table = calibrate(_CalibrationRunner(graph, tensors), tensors, feeds, chosen, progress=progress,
                      model_hash=digest)
    logger.info("calibrated %d tensors of %s with %s on %d samples (%d batches)", len(tensors), graph.name,
                chosen.name, table.num_samples, table.num_batches)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        table.save(cache)
        logger.info("calibration cache written: %s", cache)
    return table


def quantize_int8(graph: Graph, data: Iterable[Mapping] | Mapping | None = None, *,
                  calibrator: str | Calibrator = "entropy", cache: str | Path | None = None,
                  batch_size: int | None = None, progress=None,
                  ops=QUANTIZABLE_OPS) -> tuple[Graph, CalibrationTable]:
    """The INT8 (Q/DQ) model and the table its activation scales came from.

    Calibrates on `data` (or reads `cache`, see `calibrate_graph`) and inserts Q/DQ. A model that
    already has Q/DQ nodes and gets no data is returned as is (a copy), with the scales of its
    QuantizeLinear nodes as the table (`explicit_table`).

    Example:
        >>> qgraph, table = quantize_int8(graph, [{"input": x} for x in np.split(images, 10)], cache="c.json")
    """
    ops = (ops,) if isinstance(ops, str) else tuple(ops)
    explicit = has_qdq(graph)
    cached = cache is not None and Path(cache).exists()
    if data is None and not cached:
        if explicit:
            logger.info("quantize_int8: %s already has Q/DQ nodes (explicit quantization); returned as is",
                        graph.name)
            return graph.copy(), explicit_table(graph)
        missing = f" (the cache {cache} does not exist yet)" if cache is not None else ""
        raise CalibrationError(f"INT8 needs calibration data or a QDQ model{missing}: {_PROVIDE} as `data`, "
                               f"or pass `cache=` an existing calibration table of this model, or quantize a "
                               f"model that already has QuantizeLinear/DequantizeLinear nodes")
    check_qdq_opset(graph)                           # before the slow part, not after it
    if explicit and not calibration_tensors(graph, ops):
        logger.info("quantize_int8: every %s node of %s is explicitly quantized; returned as is",
                    "/".join(ops), graph.name)
        return graph.copy(), explicit_table(graph)
    table = calibrate_graph(graph, data, calibrator, cache=cache, batch_size=batch_size, progress=progress,
                            ops=ops)
    return insert_qdq(graph, table, ops), table


def explicit_table(graph: Graph) -> CalibrationTable:
    """The per-tensor scales an explicitly quantized model carries: QuantizeLinear input -> its scale.

    amax is read symmetrically (127 * scale); per-channel Q (weights) is not listed.
    """
    scales = {}
    for node in graph.ir_graph:
        if node.op_type == "QuantizeLinear" and node.domain in STANDARD_DOMAINS and len(node.inputs) > 1:
            scale = const_array(node.inputs[1])
            if scale is not None and scale.size == 1:
                scales[node.inputs[0].name] = float(scale.reshape(()))
    return CalibrationTable(model_hash=model_hash(graph.to_proto().SerializeToString()),
                            calibrator={"name": "explicit", "params": {}}, num_samples=0, scales=scales,
                            amax={name: 127.0 * s for name, s in scales.items()})


# -- feeds ---------------------------------------------------------------------------------------

class _Sized:
    """An iterable that knows its length (so `calibrate` can report progress as done / total)."""

    def __init__(self, items: Iterable, length: int):
        self.items, self.length = items, length

    def __iter__(self) -> Iterator:
        return iter(self.items)

    def __len__(self) -> int:
        return self.length


def _feeds(data, batch_size: int | None) -> Iterable[Mapping]:
    """`data` as feed dicts, chunked to `batch_size`; raises CalibrationError when there are none."""
    if data is None:
        raise CalibrationError(f"no calibration data was given: {_PROVIDE}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise CalibrationError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(data, Mapping):
        if batch_size is None:
            raise CalibrationError("calibration data is a single feed dict; pass an iterable of feed dicts, "
                                   "or give batch_size= to split its arrays into batches")
        length = math.ceil(_leading_dim(data, 0) / batch_size)
        return _Sized(list(_split(data, batch_size, 0)), length)
    items, length = feed_iterator(data, f"calibration data must be an iterable of feed dicts ({_PROVIDE})")
    length = length if batch_size is None else None
    end = object()
    first = next(items, end)
    if first is end:
        raise CalibrationError(f"calibration data is empty (no feed dict was produced; a generator can only "
                               f"be iterated once): {_PROVIDE}")
    feeds = itertools.chain([first], items)
    if batch_size is not None:
        feeds = (chunk for k, feed in enumerate(feeds) for chunk in _split(feed, batch_size, k))
    return _Sized(feeds, length) if length is not None else feeds


def _leading_dim(feed: Mapping, index: int) -> int:
    dims = {name: (np.shape(v)[0] if np.ndim(v) else None) for name, v in feed.items()}
    if len(set(dims.values())) != 1 or None in dims.values():
        raise CalibrationError(f"calibration sample {index}: cannot split it into batches, its inputs' "
                               f"leading dimensions differ: {dims}")
    return int(next(iter(dims.values())))


def _split(feed, batch_size: int, index: int) -> Iterator:
    if not isinstance(feed, Mapping) or not feed:
        yield feed                                   # calibrate() names what is wrong with it
        return
    n = _leading_dim(feed, index)
    for start in range(0, n, batch_size):
        yield {name: v[start:start + batch_size] for name, v in feed.items()}


# -- running the FP32 model ----------------------------------------------------------------------

class _CalibrationRunner:
    """feed -> the tensors to calibrate, from FP32 CPU engines built on demand.

    One engine per shape of the inputs' non-batch symbolic dims (sequence lengths); its batch profile
    is widened (rebuilt) when a larger batch arrives. Building on the CPU only lowers the graph.
    """

    def __init__(self, graph: Graph, tensors: list[str]):
        self.graph, self.keep = graph, set(tensors)
        specs = [s for s in graph.inputs if s.shape]
        self.batched = {s.name for s in specs if not isinstance(s.shape[0], int)}
        self.free = [s.name for s in specs if any(not isinstance(d, int) for d in s.shape[1:])]
        self.engines: dict[tuple, tuple] = {}        # free-dim shapes -> (Profile | None, context)

    def __call__(self, feed: dict) -> dict:
        batch = max((int(np.shape(feed[n])[0]) for n in self.batched if n in feed and np.ndim(feed[n])),
                    default=None)
        shapes = {n: tuple(np.shape(feed[n])) for n in self.free if n in feed}
        key = tuple(sorted((n, s[1:] if n in self.batched else s) for n, s in shapes.items()))
        profile, context = self.engines.get(key, (None, None))
        if context is None or (profile is not None and batch is not None and not profile.accepts(batch)):
            profile, context = self._build(batch, profile, shapes)
            self.engines[key] = (profile, context)
        return context.run(feed, keep=self.keep)

    def _build(self, batch: int | None, old, shapes: dict):
        from workbench.runtime.engine import Engine     # engine.py imports this module

        ranged = None
        if self.batched and batch is not None:
            ranged = (1, old.opt, max(batch, old.max)) if old is not None else (1, batch, batch)
        input_shapes = {n: ((ranged[1],) + s[1:] if ranged and n in self.batched else s)
                        for n, s in shapes.items()} or None
        config = BuilderConfig(backend="cpu", precision="fp32", profile=ranged, input_shapes=input_shapes)
        logger.debug("calibration engine for %s: profile %s, input shapes %s", self.graph.name, ranged,
                     input_shapes)
        engine = Engine(build_network(self.graph, config))
        return engine.profile, engine.create_context()
