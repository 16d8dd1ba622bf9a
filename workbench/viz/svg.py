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
import hashlib
import html
import logging
import os
import re
import shutil
import textwrap
import time
from typing import Any

import onnx_ir as ir

from workbench.ir import Graph, load
from workbench.ir.dtypes import np_dtype
from workbench.passes.base import sources_of
from workbench.viz.layout import Layout, dot_layout, layered_layout
from workbench.errors import ViewError

__all__ = ["render_svg", "SvgView", "op_class", "OP_CLASSES"]
log = logging.getLogger(__name__)

FONT = "Helvetica, Arial, sans-serif"
PANEL_GAP = 60.0
TITLE_HEIGHT = 44.0
MARGIN_X = 10.0

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
# fill, stroke
COLOURS: dict[str, tuple[str, str]] = {
    "conv": ("#dbe8f7", "#3b6ea8"),
    "matmul": ("#e6dcf5", "#6a4c9c"),
    "activation": ("#fde2cf", "#c0652b"),
    "normalization": ("#d9f0e3", "#2f8a57"),
    "pooling": ("#d6eff2", "#2b8593"),
    "elementwise": ("#f4f4d2", "#8c8a2e"),
    "shape": ("#ececec", "#7a7a7a"),
    "other": ("#f7f7f7", "#9a9a9a"),
    "fused": ("#ffe9a8", "#c47f00"),
    "io": ("#ffffff", "#444444"),
}
LABELS = {"conv": "conv", "matmul": "matmul / gemm", "activation": "activation", "normalization": "normalization",
          "pooling": "pooling / reduce", "elementwise": "elementwise", "shape": "shape / data movement",
          "other": "other", "fused": "fused (workbench)"}


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


def _text_width(text: str, size: float, bold: bool = False) -> float:
    return len(text) * size * (0.62 if bold else 0.57)


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


# -- drawing ----------------------------------------------------------------------------------
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _esc(text: Any) -> str:
    return html.escape(_NOT_XML.sub("", str(text)), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _document(panels: list[_Panel], focus: str | None, radius: int, compare: bool) -> str:
    uid = "wb" + hashlib.sha1("|".join(f"{p.title}:{sorted(p.items)}" for p in panels).encode()).hexdigest()[:8]
    height = max(p.layout.height for p in panels) + TITLE_HEIGHT
    bodies, x = [], 0.0
    for k, panel in enumerate(panels):
        heading = _heading(panel, panels[0] if compare and k == 1 else None, focus, radius)
        if k:
            bodies.append(f'<line x1="{_f(x - PANEL_GAP / 2)}" y1="8" x2="{_f(x - PANEL_GAP / 2)}" '
                          f'y2="{_f(height)}" stroke="#cccccc" stroke-dasharray="4 4"/>')
        bodies += [f'<g class="wb-panel" data-title="{_esc(panel.title)}" transform="translate({_f(x)},0)">',
                   f'<text x="{_f(MARGIN_X)}" y="24" font-size="17" font-weight="bold">{_esc(heading)}</text>',
                   f'<g transform="translate(0,{_f(TITLE_HEIGHT)})">', _panel_svg(panel, uid), "</g>", "</g>"]
        x += max(panel.layout.width, _text_width(heading, 17, bold=True) + 2 * MARGIN_X) + PANEL_GAP
    total_width = max(x - PANEL_GAP, 420.0)
    legend, legend_height = _legend(panels, total_width, height + 10)
    total_height = height + 10 + legend_height
    defs = (f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555555"/></marker></defs>')
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(total_width)}" height="{_f(total_height)}" '
            f'viewBox="0 0 {_f(total_width)} {_f(total_height)}" font-family="{FONT}">')
    return "\n".join([head, defs, '<rect width="100%" height="100%" fill="#ffffff"/>', *bodies, legend, "</svg>"])


def _heading(panel: _Panel, before: _Panel | None, focus: str | None, radius: int) -> str:
    text = f"{panel.title} \u00b7 {panel.total} nodes"
    if before is not None and before.total != panel.total:
        text += f" ({panel.total - before.total:+d})"
    if focus is not None:
        text += f" \u00b7 focus {focus!r} \u00b1{radius}: {panel.node_count} shown"
    return text


def _panel_svg(panel: _Panel, uid: str) -> str:
    lay = panel.layout
    out = []
    for (tail, head, tip), route in zip(panel.edges, lay.edges):
        out.append(f'<path class="wb-edge" d="{_path(route, lay.curve)}" fill="none" stroke="#666666" '
                   f'stroke-width="1.2" marker-end="url(#{uid}-arrow)"><title>{_esc(tip)}</title></path>')
    for key, item in panel.items.items():
        cx, cy = lay.nodes[key]
        w, h = item.size
        if item.kind == "node":
            out.append(_box(item, cx, cy, w, h))
        else:
            out.append(f'<g class="wb-io" data-kind="{item.kind}" data-name="{_esc(item.name)}">'
                       f'<title>{_esc(item.title)}</title>'
                       f'<ellipse cx="{_f(cx)}" cy="{_f(cy)}" rx="{_f(w / 2)}" ry="{_f(h / 2)}" fill="#ffffff" '
                       f'stroke="#444444" stroke-width="1.5"/>'
                       f'{_lines(item.lines, cx, cy, [11.5, 10])}</g>')
    return "\n".join(out)


def _box(item: _Item, cx: float, cy: float, w: float, h: float) -> str:
    fill, stroke = COLOURS[item.cls]
    x, y = cx - w / 2, cy - h / 2
    attrs = f' data-op-class="{item.cls}" data-name="{_esc(item.name)}"'
    if item.fused_from:
        attrs += f' data-fused-from="{_esc(",".join(item.fused_from))}"'
    if item.fused_into:
        attrs += f' data-fused-into="{_esc(item.fused_into)}"'
    parts = [f'<g class="wb-node"{attrs}><title>{_esc(item.title)}</title>',
             f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" rx="5" fill="{fill}" '
             f'stroke="{stroke}" stroke-width="{3.2 if item.cls == "fused" else 1.3}"/>']
    if item.base:                          # the fused op's kind, as a stripe on the left
        parts.append(f'<rect x="{_f(x + 3)}" y="{_f(y + 5)}" width="5" height="{_f(h - 10)}" rx="2" '
                     f'fill="{COLOURS[item.base][1]}"/>')
    parts.append(_lines(item.lines, cx, cy, [12, 10.5, 10]) + "</g>")
    return "".join(parts)


def _lines(lines: list[str], cx: float, cy: float, sizes: list[float]) -> str:
    out, y = [], cy - sum(s + 3 for s in sizes[:len(lines)]) / 2
    for k, (line, size) in enumerate(zip(lines, sizes)):
        y += size + 3
        weight = ' font-weight="bold"' if k == 0 else ""
        colour = "#222222" if k < 2 else "#555555"
        out.append(f'<text x="{_f(cx)}" y="{_f(y - 3)}" font-size="{size}" text-anchor="middle"{weight} '
                   f'fill="{colour}">{_esc(line)}</text>')
    return "".join(out)


def _path(points: list[tuple[float, float]], curve: str) -> str:
    if not points:
        return ""
    d = [f"M{_f(points[0][0])},{_f(points[0][1])}"]
    if curve == "bezier":
        rest = points[1:]
        for k in range(0, len(rest) - 2, 3):
            (a, b), (c, e), (g, h) = rest[k:k + 3]
            d.append(f"C{_f(a)},{_f(b)} {_f(c)},{_f(e)} {_f(g)},{_f(h)}")
        return " ".join(d)
    for (px, py), (qx, qy) in zip(points, points[1:]):
        if px == qx:
            d.append(f"L{_f(qx)},{_f(qy)}")
        else:
            my = (qy - py) / 2
            d.append(f"C{_f(px)},{_f(py + my)} {_f(qx)},{_f(qy - my)} {_f(qx)},{_f(qy)}")
    return " ".join(d)


def _legend(panels: list[_Panel], width: float, top: float) -> tuple[str, float]:
    used = [c for c in LABELS if any(it.cls == c for p in panels for it in p.items.values())]
    out = [f'<g class="wb-legend" transform="translate({_f(MARGIN_X)},{_f(top)})">']
    x, y = 0.0, 14.0
    for cls in used:
        fill, stroke = COLOURS[cls]
        label = LABELS[cls]
        out.append(f'<rect x="{_f(x)}" y="{_f(y - 11)}" width="16" height="12" rx="2" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="{2.5 if cls == "fused" else 1.2}"/>'
                   f'<text x="{_f(x + 22)}" y="{_f(y)}" font-size="11">{_esc(label)}</text>')
        x += 34 + _text_width(label, 11)
        if x > width - 160:
            x, y = 0.0, y + 18
    fused = [it for p in panels for it in p.items.values() if it.fused_from]
    if fused:
        y += 26
        out.append(f'<text x="0" y="{_f(y)}" font-size="12" font-weight="bold">fused node \u2190 original nodes'
                   f' ({len(fused)})</text>')
        per_line = max(int((width - 2 * MARGIN_X) / _text_width("x", 10.5)), 40)
        for item in fused:
            text = f"{item.name} \u2190 {', '.join(item.fused_from)}"
            for line in textwrap.wrap(text, per_line, subsequent_indent="    ", break_on_hyphens=False):
                y += 15
                out.append(f'<text class="wb-legend-fused" x="0" y="{_f(y)}" font-size="10.5" '
                           f'xml:space="preserve">{_esc(line)}</text>')
    out.append("</g>")
    return "\n".join(out), y + 14
