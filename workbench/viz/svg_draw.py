"""Drawing for `render_svg`: laid-out panels in, SVG text out.

`svg.py` decides what to draw (boxes, labels, tooltips, the focus selection) and lays it out;
this module only writes it: the page, each panel's heading, boxes and edges, and the legend
with the colour palette and the fused-node list. It imports nothing from `svg.py` at runtime.
"""
from __future__ import annotations

import hashlib
import html
import re
import textwrap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.viz.svg import _Item, _Panel

__all__ = ["COLOURS", "LABELS", "FONT", "PANEL_GAP", "TITLE_HEIGHT", "MARGIN_X", "_document", "_text_width"]

FONT = "Helvetica, Arial, sans-serif"
PANEL_GAP = 60.0
TITLE_HEIGHT = 44.0
MARGIN_X = 10.0

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

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _esc(text: Any) -> str:
    return html.escape(_NOT_XML.sub("", str(text)), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _text_width(text: str, size: float, bold: bool = False) -> float:
    return len(text) * size * (0.62 if bold else 0.57)


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
