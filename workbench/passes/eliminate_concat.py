"""Eliminate Concat copies: producers write straight into their slice of one concat buffer.

    Y = Concat(X_0, ..., X_k, axis)   ==>   Y = ConcatView(X_0, ..., X_k, axis)
    producer(X_i).metadata_props: workbench.write_into = Y, workbench.slice = "axis:offset:extent"

where offset = extent(X_0) + ... + extent(X_{i-1}) along `axis`. A memory planner allocates Y once
and places each annotated X_i at its slice, so the concat itself moves no data.

An input can be written in place only if a node computes it (not a graph input or constant), the
concat reads it once and nothing else reads it (a value read elsewhere, or returned as a graph
output, must keep its own buffer), and its producer has that one output. The exception is a
SplitView output (one branch of the sibling convs merge_parallel_convs widened, as the inception
block's 1x1 branch): the view's producer, the wide conv, writes that channel range straight into the
concat slice, so the SplitView gets per-output keys `workbench.write_into.<k>` / `workbench.slice.<k>`
(allowed when the split and the concat run along the same axis). Inputs that cannot be placed are
copied by the ConcatView: they are listed in its `workbench.copy_inputs` metadata, in the report
detail and in the misses. A Concat with no input that can be placed stays a Concat (a ConcatView would
copy everything anyway), and so does one whose extents along `axis` are not static.
The values never change: on the CPU backend ConcatView is np.concatenate.
"""
from __future__ import annotations

import logging

import onnx_ir as ir
from onnx_ir.convenience import replace_nodes_and_values

from workbench.passes.base import GraphPass
from workbench.passes.edit import STANDARD_DOMAINS, attr, const_array, fused_node

__all__ = ["EliminateConcatPass", "WRITE_INTO", "SLICE", "COPY_INPUTS"]
log = logging.getLogger(__name__)

WRITE_INTO, SLICE, COPY_INPUTS = "workbench.write_into", "workbench.slice", "workbench.copy_inputs"
_VIEW_OPS = {("workbench", "SplitView")}


class EliminateConcatPass(GraphPass):
    name = "eliminate_concat"
    level = 2

    def apply(self, graph: ir.Graph) -> int:
        count = 0
        for node in list(graph):
            if node.op_type == "Concat" and node.domain in STANDARD_DOMAINS:
                count += self.eliminate(graph, node)
        return count

    def eliminate(self, graph: ir.Graph, concat: ir.Node) -> bool:
        slices = _slices(concat)
        if isinstance(slices, str):
            self.why_not(concat, slices)
            return False
        reasons = {i: _why_copied(graph, concat, value) for i, value in enumerate(concat.inputs)}
        copied = {i: r for i, r in reasons.items() if r}
        if len(copied) == len(reasons):
            self.why_not(concat, "no input can be written in place: " +
                         "; ".join(f"{concat.inputs[i].name!r} {r}" for i, r in copied.items()))
            return False
        out, names = concat.outputs[0].name, [v.name for v in concat.inputs]
        view = fused_node("ConcatView", concat.inputs, {"axis": slices[0][0]}, [concat], graph)
        if copied:
            view.metadata_props[COPY_INPUTS] = ",".join(names[i] for i in copied)
        in_place = []
        for i, value in enumerate(concat.inputs):
            if i in copied:
                self.why_not(concat, f"input {value.name!r} is copied into the concat: it {copied[i]}")
                continue
            text = ":".join(map(str, slices[i]))
            producer = value.producer()
            suffix = f".{list(producer.outputs).index(value)}" if _is_view(producer) else ""
            producer.metadata_props.update({WRITE_INTO + suffix: out, SLICE + suffix: text})
            in_place.append(f"{value.name} -> {text}")
        name = concat.name
        replace_nodes_and_values(graph, concat, [concat], [view], [concat.outputs[0]], [view.outputs[0]])
        view.name = name
        detail = f"written in place into {out!r}: {', '.join(in_place)}"
        if copied:
            detail += "; copied: " + ", ".join(f"{names[i]} ({r})" for i, r in copied.items())
        self.record([view], [concat], detail)
        return True


def _slices(concat: ir.Node) -> list[tuple[int, int, int]] | str:
    """(axis, offset, extent) of each input along the concat axis, or why they are not static."""
    shapes = [v.shape if v is not None else None for v in concat.inputs]
    if not shapes or any(s is None for s in shapes):
        return "an input has no known shape"
    rank = len(shapes[0])
    axis = attr(concat, "axis", 0)
    axis = axis + rank if axis < 0 else axis
    extents = [s[axis] for s in shapes]
    if not all(isinstance(e, int) for e in extents):
        return f"the extents along axis {axis} are not static ({[str(e) for e in extents]})"
    offsets = [sum(extents[:i]) for i in range(len(extents))]
    return [(axis, o, e) for o, e in zip(offsets, extents)]


def _why_copied(graph: ir.Graph, concat: ir.Node, value: ir.Value) -> str | None:
    """Why `value` cannot be computed straight into the concat buffer, or None if it can."""
    producer = value.producer()
    if producer is None:
        return "is a constant" if const_array(value) is not None else "is a graph input"
    if const_array(value) is not None:
        return "is a constant"
    if _is_view(producer):
        split_axis, concat_axis = attr(producer, "axis", 0), attr(concat, "axis", 0)
        if split_axis != concat_axis:
            return f"is a view split along axis {split_axis}, the concat runs along axis {concat_axis}"
    elif len(producer.outputs) > 1:
        return f"comes from {producer.name!r}, which has {len(producer.outputs)} outputs"
    if value.is_graph_output():
        return "is a graph output"
    others = [u.node.name for u in value.uses() if u.node is not concat]
    if others:
        return f"is also read by {others}"
    if len(list(value.uses())) > 1:
        return "is read more than once by this concat"
    return None


def _is_view(node: ir.Node) -> bool:
    return (node.domain, node.op_type) in _VIEW_OPS
