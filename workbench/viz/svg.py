"""`render_svg`: a static picture of a graph (or of before / after optimization side by side).

Why static and ours: it needs no server, so it survives notebook export to HTML and works
offline; and unlike Netron it can colour what the optimizer did. Boxes are coloured by op class,
fused nodes (domain "workbench") get a thick border and a distinct fill, and their original nodes
are listed in the box's tooltip and in a legend under the graph. Initializers are not drawn;
their shapes are in the consuming node's tooltip.

Example:
    >>> optimized, report = wb.optimize(graph)
    >>> wb.render_svg(graph, optimized, focus="inception_3a.*").save("3a.svg")
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import shutil
import time
from typing import Any

import onnx_ir as ir

from workbench.ir import Graph, load
from workbench.ir.dtypes import np_dtype
from workbench.ir import source_nodes_of as sources_of
from workbench.viz.layout import Layout, dot_layout, layered_layout
from workbench.viz.svg_draw import _document, _text_width
from workbench.errors import ViewError

__all__ = ["render_svg", "SvgView", "op_class", "OP_CLASSES"]
log = logging.getLogger(__name__)

OP_CLASSES: dict[str, frozenset[str]] = {
    "conv": frozenset("Conv ConvTranspose ConvInteger QLinearConv DeformConv".split()),
    "matmul": frozenset("MatMul Gemm MatMulInteger QLinearMatMul Einsum Attention".split()),
    "activation": frozenset("Relu LeakyRelu PRelu Sigmoid HardSigmoid Tanh Gelu FastGelu Elu Selu Celu Mish "
                            "Softplus Softsign HardSwish ThresholdedRelu Clip Softmax LogSoftmax Hardmax "
                            "Swish".split()),
    "normalization": frozenset("BatchNormalization LayerNormalization InstanceNormalization GroupNormalization "
                               "LpNormalization LRN RMSNormalization SimplifiedLayerNormalization "
                               "SkipLayerNormalization MeanVarianceNormalization".split()),
    "pooling": frozenset("MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool GlobalLpPool MaxRoiPool "
                         "RoiAlign ReduceMean ReduceMax ReduceMin ReduceSum ReduceProd ReduceL1 ReduceL2 "
                         "ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax ArgMin TopK".split()),
    "elementwise": frozenset("Add Sub Mul Div Pow Sqrt Exp Log Abs Neg Reciprocal Erf Min Max Sum Mean Where "
                             "Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor Cast CastLike Floor "
                             "Ceil Round Sign Sin Cos Tan Mod BitShift IsNaN IsInf QuantizeLinear "
                             "DequantizeLinear DynamicQuantizeLinear".split()),
    "shape": frozenset("Reshape Flatten Transpose Concat Split Slice Gather GatherElements GatherND Squeeze "
                       "Unsqueeze Shape Size Expand Pad Tile Resize Upsample Identity Constant ConstantOfShape "
                       "Range DepthToSpace SpaceToDepth ScatterND ScatterElements NonZero OneHot Compress "
                       "Trilu EyeLike".split()),
}


def op_class(op_type: str, domain: str = "") -> str:
    """The colour class of an op: conv, matmul, activation, ..., "fused" for workbench-domain nodes."""
    if domain == "workbench":
        return "fused"
    for name, ops in OP_CLASSES.items():
        if op_type in ops:
            return name
    return "other"


def _base_class(op_type: str) -> str:
    """What a fused op mostly is, for the stripe on its box: FusedConv -> conv."""
    for key, cls in (("View", "shape"), ("Concat", "shape"), ("Split", "shape"), ("Conv", "conv"),
                     ("Gemm", "matmul"), ("MatMul", "matmul"), ("Attention", "matmul"), ("Norm", "normalization"),
                     ("Gelu", "activation"), ("Pool", "pooling")):
        if key in op_type:
            return cls
    return "elementwise"


class SvgView:
    """A rendered SVG: `.svg` (the text), shown inline by Jupyter, `.save(path)` to keep it."""

    def __init__(self, svg: str, engine: str, seconds: float, counts: list[int]):
        self.svg = svg
        self.engine = engine
        self.seconds = seconds
        self.counts = counts

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str | os.PathLike) -> str:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg)
        return os.fspath(path)

    def __repr__(self) -> str:
        return (f"<SvgView {' / '.join(map(str, self.counts))} nodes, {len(self.svg) // 1024} KiB, "
                f"engine={self.engine}, {self.seconds:.2f} s>")


def render_svg(graph: Graph, optimized: Graph | None = None, *, focus: str | None = None, radius: int = 2,
               engine: str = "auto") -> SvgView:
    """Draw `graph` (and `optimized` beside it) as one static SVG.

    Args:
        graph: the graph to draw (a `Graph`, or anything `wb.load` takes).
        optimized: the optimized graph; drawn to the right, titled "after", fused nodes listed below.
        focus: a regex (full match) or an exact node name; only matching nodes and their neighbours
            within `radius` edges are drawn. A fused node matches if one of its original nodes does.
        radius: how many edges around the focused nodes to include.
        engine: "dot" (graphviz, must be on PATH), "python" (pure-Python layered layout) or "auto".

    Example:
        >>> view = wb.render_svg(graph, optimized, focus="inception_3a.*", radius=1)
        >>> view.save("inception_3a.svg")
    """
    started = time.perf_counter()
    engine = _engine(engine)
    graphs = [_as_graph(graph)] + ([_as_graph(optimized)] if optimized is not None else [])
    matcher = _matcher(focus)
    fused_into = _fused_into(graphs[1]) if optimized is not None else {}
    titles = ["before", "after"] if optimized is not None else [graphs[0].name]
    panels = [_Panel.of(g, t, matcher, radius, fused_into if k == 0 else {}) for k, (g, t) in
              enumerate(zip(graphs, titles))]
    if matcher is not None and not any(p.items for p in panels):
        raise ViewError(f"focus {focus!r} matches no node name{_suggest(focus, graphs[0])}")
    used = engine
    for panel in panels:
        panel.layout, used = _lay_out(panel, engine)
    svg = _document(panels, focus, radius, optimized is not None)
    seconds = time.perf_counter() - started
    log.info("render_svg: %s nodes with %s in %.2f s", [p.node_count for p in panels], used, seconds)
    return SvgView(svg, used, seconds, [p.node_count for p in panels])


# -- what to draw -----------------------------------------------------------------------------
@dataclasses.dataclass
class _Item:
    kind: str                   # "node" | "input" | "output"
    name: str
    lines: list[str]            # label lines; the first is bold
    title: str                  # tooltip
    cls: str
    fused_from: list[str] = dataclasses.field(default_factory=list)
    base: str = ""              # for fused nodes: the class of the stripe
    fused_into: str = ""
    size: tuple[float, float] = (0.0, 0.0)


@dataclasses.dataclass
class _Panel:
    title: str
    items: dict[str, _Item]
    edges: list[tuple[str, str, str]]          # tail key, head key, tooltip
    node_count: int                            # drawn graph nodes
    total: int                                 # graph nodes
    layout: Layout | None = None

    @classmethod
    def of(cls, graph: Graph, title: str, matcher, radius: int, fused_into: dict[str, str]) -> "_Panel":
        g = graph.model.graph
        nodes = list(g)
        inits = g.initializers
        producer: dict[int, str] = {}
        items: dict[str, _Item] = {}
        inputs = [v for v in g.inputs if v.name not in inits]
        for k, value in enumerate(inputs):
            producer[id(value)] = f"i{k}"
        for i, node in enumerate(nodes):
            for value in node.outputs:
                producer[id(value)] = f"n{i}"
        edges: list[tuple[str, str, str]] = []
        for i, node in enumerate(nodes):
            for value in node.inputs:
                if value is not None and id(value) in producer:
                    edges.append((producer[id(value)], f"n{i}", _value_text(value)))
        for k, value in enumerate(g.outputs):
            if id(value) in producer:
                edges.append((producer[id(value)], f"o{k}", _value_text(value)))

        keep = _selection(nodes, edges, matcher, radius)
        for i, node in enumerate(nodes):
            if keep is None or i in keep:
                items[f"n{i}"] = _node_item(node, inits, fused_into)
        attached = {t for t, h, _ in edges if h in items} | {h for t, h, _ in edges if t in items}
        for k, value in enumerate(inputs):
            if keep is None or f"i{k}" in attached:
                items[f"i{k}"] = _io_item("input", value)
        for k, value in enumerate(g.outputs):
            if keep is None or f"o{k}" in attached:
                items[f"o{k}"] = _io_item("output", value)
        edges = [e for e in edges if e[0] in items and e[1] in items]
        count = sum(1 for it in items.values() if it.kind == "node")
        return cls(title, items, edges, count, len(nodes))


def _selection(nodes: list[ir.Node], edges, matcher, radius: int) -> set[int] | None:
    if matcher is None:
        return None
    hit = {i for i, node in enumerate(nodes) if any(matcher(n) for n in [node.name or ""] + sources_of(node))}
    adjacent: dict[int, set[int]] = collections.defaultdict(set)
    for tail, head, _ in edges:
        if tail[0] == "n" and head[0] == "n":
            a, b = int(tail[1:]), int(head[1:])
            adjacent[a].add(b)
            adjacent[b].add(a)
    keep, frontier = set(hit), set(hit)
    for _ in range(max(radius, 0)):
        frontier = {b for a in frontier for b in adjacent[a]} - keep
        keep |= frontier
    return keep


def _matcher(focus: str | None):
    if focus is None:
        return None
    try:
        pattern = re.compile(focus)
    except re.error:
        pattern = None
    return lambda name: name == focus or (pattern is not None and pattern.fullmatch(name) is not None)


def _suggest(focus: str, graph: Graph) -> str:
    import difflib
    close = difflib.get_close_matches(focus, [n.name for n in graph.nodes if n.name], n=3, cutoff=0.4)
    return f"; close names: {', '.join(close)}" if close else ""


def _fused_into(graph: Graph) -> dict[str, str]:
    out = {}
    for node in graph.nodes:
        if "source_nodes" in node.attributes:
            for source in sources_of(node):
                out[source] = node.name
    return out


def _node_item(node: ir.Node, inits, fused_into: dict[str, str]) -> _Item:
    qualified = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
    cls = op_class(node.op_type, node.domain)
    fused = list(sources_of(node)) if "source_nodes" in node.attributes else []
    if fused and cls != "fused":
        cls = "fused"
    name = node.name or node.op_type
    op_line = node.op_type + (f"  ({len(fused)} op{'s' if len(fused) > 1 else ''})" if fused else "")
    shapes = [_shape_text(v) for v in node.outputs if v is not None]
    shape_line = shapes[0] + (f"  +{len(shapes) - 1}" if len(shapes) > 1 else "") if shapes else ""
    title = [name, qualified]
    if fused:
        title.append("fused from: " + ", ".join(fused))
    if name in fused_into:
        title.append("fused into: " + fused_into[name])
    ins = [("weight " if v.name in inits or v.const_value is not None else "") + _value_text(v)
           for v in node.inputs if v is not None]
    title += ["inputs:"] + [f"  {t}" for t in ins] if ins else []
    title += ["outputs:"] + [f"  {_value_text(v)}" for v in node.outputs]
    attrs = _attr_text(node)
    if attrs:
        title.append("attributes: " + attrs)
    item = _Item("node", name, [op_line, _shorten(name, 34), shape_line], "\n".join(title), cls, fused,
                 _base_class(node.op_type) if fused else "", fused_into.get(name, ""))
    width = max(_text_width(op_line, 12, bold=True), _text_width(item.lines[1], 10.5), _text_width(shape_line, 10))
    item.size = (min(max(width + 20, 96.0), 280.0), 52.0)
    return item


def _io_item(kind: str, value: ir.Value) -> _Item:
    lines = [_shorten(value.name, 30), _shape_text(value)]
    item = _Item(kind, value.name, lines, f"graph {kind}\n{_value_text(value)}", "io")
    width = max(_text_width(lines[0], 11.5, bold=True), _text_width(lines[1], 10))
    item.size = (min(max(width + 36, 90.0), 280.0), 40.0)
    return item


def _shape_text(value: ir.Value) -> str:
    if value.shape is None:
        return "?"
    dims = []
    for d in value.shape:
        dims.append(str(d) if isinstance(d, int) else (str(d.value) if getattr(d, "value", None) else "?"))
    return "\u00d7".join(dims) if dims else "scalar"


def _value_text(value: ir.Value) -> str:
    try:
        dtype = np_dtype(value.dtype).name if value.dtype is not None else "?"
    except Exception:                      # dtypes numpy cannot hold (string, float4, ...)
        dtype = str(value.dtype)
    return f"{value.name}: {dtype}[{_shape_text(value)}]"


def _attr_text(node: ir.Node) -> str:
    parts = []
    for key, attr in node.attributes.items():
        if key == "source_nodes":
            continue
        if attr.type in (ir.AttributeType.TENSOR,):
            value = f"tensor[{'x'.join(map(str, attr.value.shape.dims)) if attr.value.shape else '?'}]"
        elif attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS, ir.AttributeType.TENSORS):
            value = f"<{attr.type.name.lower()}>"
        else:
            value = attr.value
            value = value.decode() if isinstance(value, bytes) else value
            value = list(value) if isinstance(value, (tuple, list)) else value
        parts.append(f"{key}={_shorten(str(value), 60)}")
    return ", ".join(parts)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "\u2026" + text[len(text) - (limit - head - 1):]


# -- layout -----------------------------------------------------------------------------------
def _engine(engine: str) -> str:
    if engine not in ("auto", "dot", "python"):
        raise ViewError(f"engine must be 'auto', 'dot' or 'python', got {engine!r}")
    if engine == "dot" and shutil.which("dot") is None:
        raise ViewError("engine='dot' needs graphviz's `dot` on PATH (e.g. `conda install graphviz` or "
                        "`apt-get install graphviz`); engine='python' needs nothing")
    if engine == "auto":
        return "dot" if shutil.which("dot") else "python"
    return engine


def _lay_out(panel: _Panel, engine: str) -> tuple[Layout, str]:
    sizes = {key: item.size for key, item in panel.items.items()}
    pairs = [(t, h) for t, h, _ in panel.edges]
    if engine == "dot":
        ellipses = {k for k, it in panel.items.items() if it.kind != "node"}
        try:
            return dot_layout(sizes, pairs, ellipses=ellipses, dot=shutil.which("dot") or "dot"), "dot"
        except Exception as error:         # noqa: BLE001  (a broken graphviz must not cost the picture)
            log.warning("graphviz dot failed (%s); using the python layout", error)
    return layered_layout(sizes, pairs), "python"


def _as_graph(graph: Any) -> Graph:
    return graph if isinstance(graph, Graph) else load(graph)
