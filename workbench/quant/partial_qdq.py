"""Q/DQ for some compute nodes only: mixed precision with int8 (an allowed set with "int8", per-layer
overrides, sensitivity analysis, automatic mixed precision).

`insert_qdq` quantizes every candidate node; here the nodes not chosen are given their float
operands back afterwards, and the Q/DQ nodes and int8 weights nobody reads any more are removed.
Reusing insert_qdq this way keeps one implementation of the placement rules (shared activations
quantized once, per-channel weight axes, explicit Q/DQ honoured).

Nodes are named by their first output tensor: layer and node names may be generated (and change
when nodes are inserted), output tensor names do not.

    >>> qgraph = insert_qdq_only(graph, table, keep={"relu1", "logits"})   # conv1 and fc2 in int8
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Iterable

import onnx_ir as ir

from workbench.ir import Graph, load
from workbench.passes.edit import add_initializer, const_array, drop_unread_initializers, producer_op
from workbench.quant.insert_qdq import DECISIONS_KEY, QUANTIZABLE_OPS, insert_qdq
from workbench.quant.table import CalibrationTable

__all__ = ["insert_qdq_only"]
log = logging.getLogger(__name__)

_QDQ = ("QuantizeLinear", "DequantizeLinear")


def insert_qdq_only(graph: Graph, table: CalibrationTable, keep: Iterable[str], ops=QUANTIZABLE_OPS) -> Graph:
    """A copy of `graph` with Q/DQ in front of the candidate nodes whose first output is in `keep`.

    The other nodes read their original float32 operands; the result's DECISIONS_KEY meta says
    "kept in float by the precision choice" for them.
    """
    keep = set(keep)
    full = insert_qdq(graph, table, ops)
    g, ir_version = full.ir_graph, full.model.ir_version
    original = {node.outputs[0].name: node for node in graph.ir_graph if node.outputs and node.outputs[0] is not None}
    values = {v.name: v for v in g.inputs} | dict(g.initializers) | {
        v.name: v for node in g for v in node.outputs if v is not None}
    restored = set()
    for node in list(g):
        key = node.outputs[0].name if node.outputs and node.outputs[0] is not None else None
        if key in keep or key not in original or node.op_type in _QDQ:
            continue
        before = original[key]
        for slot in range(min(2, len(node.inputs), len(before.inputs))):
            now, was = node.inputs[slot], before.inputs[slot]
            if now is None or was is None or now.name == was.name or producer_op(now, "DequantizeLinear") is None:
                continue
            source = values.get(was.name)
            if source is None:                       # insert_qdq dropped the float weight: put it back
                source = values[was.name] = add_initializer(g, was.name, const_array(was), ir_version)
            node.replace_input_with(slot, source)
            restored.add(node.name or key)
    _remove_unread_qdq(g, ir_version)
    out = Graph(load(full.to_proto()).model, graph.source)
    out.model.meta[DECISIONS_KEY] = [
        dataclasses.replace(d, reason="kept in float by the precision choice") if d.node in restored else d
        for d in full.model.meta.get(DECISIONS_KEY, [])]
    log.info("int8 for %d of the candidate nodes; %d kept in float", len(keep), len(restored))
    return out


def _remove_unread_qdq(graph: ir.Graph, ir_version: int) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads (a DQ first, then the Q that fed it), and the
    scale, zero point and int8 weight initializers left unread."""
    freed: list[ir.Value] = []
    for node in reversed(list(graph)):
        if node.op_type in _QDQ and all(v is None or (not v.uses() and not v.is_graph_output()) for v in node.outputs):
            freed.extend(v for v in node.inputs if v is not None)
            graph.remove(node, safe=True)
    drop_unread_initializers(graph, freed, ir_version)
