"""Mixed precision with int8: decide per layer on the float graph, calibrate, quantize only the
layers that chose int8, build with those decisions.

Why this order: a layer's int8 choice needs Q/DQ nodes in the graph, and the Q/DQ graph no longer
shows the float alternatives; so the decisions are taken first on a lowered float32 probe of the
graph (the builder's `decide_precisions`: allowed set, strict, overrides, timing), the calibration
(or its cache) gives the activation scales, `insert_qdq_only` quantizes the chosen nodes, and
`build_network` takes the decisions as they are (keyed by each layer's first output tensor).

A model that already holds Q/DQ nodes is explicitly quantized: its int8 layers are those, and the
builder decides the rest without calibrating.
"""
from __future__ import annotations

import dataclasses
import logging

from workbench.backends import get_backend
from workbench.builder import BuilderConfig, Network, build_network
from workbench.builder.precision_policy import decide_precisions, describe
from workbench.builder.timing_cache import TimingCache
from workbench.ir import Graph
from workbench.quant.errors import CalibrationError
from workbench.quant.insert_qdq import has_qdq
from workbench.quant.partial_qdq import insert_qdq_only
from workbench.runtime.calibration import calibrate_graph

__all__ = ["build_mixed_int8", "probe_network"]
log = logging.getLogger(__name__)


def probe_network(graph: Graph, config: BuilderConfig) -> Network:
    """The graph lowered in float32, nothing tuned: what the precision decisions look at."""
    probe = dataclasses.replace(config, precision="fp32", strict=False, layer_precisions=None, sparsity="disable",
                                builder_level=0, timing_cache=None, progress=None)
    return build_network(graph, probe)


def build_mixed_int8(graph: Graph, config: BuilderConfig) -> Network:
    """`build_network` for an allowed set or overrides that include int8 (see the module docstring)."""
    if has_qdq(graph):
        log.info("%s has Q/DQ nodes: explicit int8 where the model says, %s decided for the rest", graph.name,
                 describe(config))
        return build_network(graph, config)
    if config.calibration_data is None and config.calibration_cache is None:
        raise CalibrationError(
            f"{graph.source}: int8 in precision={describe(config)!r} or in layer_precisions needs calibration: pass "
            "BuilderConfig(calibration_data=...) (an iterable of feed dicts, ~500 representative samples), or "
            "calibration_cache= a table written for this model, or build a model that already holds "
            "QuantizeLinear/DequantizeLinear nodes")
    probe = probe_network(graph, config)
    cache = TimingCache(config.timing_cache)
    choices = decide_precisions(probe.layers, probe.weights, probe.inputs, config, get_backend(config.backend),
                                probe.profile.opt if probe.profile else 1, int8_ok=True, cache=cache)
    cache.save()
    int8 = {c.output for c in choices.values() if c.precision == "int8"}
    if int8:
        table = calibrate_graph(graph, config.calibration_data, config.calibrator, cache=config.calibration_cache)
        graph = insert_qdq_only(graph, table, int8)
    else:
        log.info("no layer chose int8 (%s): calibration skipped", describe(config))
    return build_network(graph, config, precisions={c.output: c for c in choices.values()})
