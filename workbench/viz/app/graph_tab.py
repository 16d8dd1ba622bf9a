"""Graph tab: the model before and after optimization, side by side, with the passes as checkboxes.

The picture is the static SVG of `wb.render_svg` (works offline, survives export, colours fusions);
Netron is a button, since it needs a browser on the kernel's machine. SVG clicks cannot reach Python,
so a fused node is chosen from a dropdown, which lists its original nodes and highlights them;
the Layers tab highlights a layer's source nodes the same way (`GraphTab.highlight`).
"""
from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Iterable

import ipywidgets as widgets

import workbench as wb
from workbench.ir import WORKBENCH_DOMAIN, source_nodes_of
from workbench.passes.pipeline import pass_names
from workbench.viz.app.common import error_box, esc, notice_box, show_html

if TYPE_CHECKING:
    from workbench.viz.app.main import Workbench

__all__ = ["GraphTab", "highlight_svg", "HIGHLIGHT"]

HIGHLIGHT = "#d81b60"
_NODE = re.compile(r'<g class="wb-node"(?P<attrs>[^>]*)>(?P<title><title>.*?</title>)?'
                   r'(?P<rect><rect [^>]*?)stroke="[^"]*" stroke-width="[^"]*"', re.S)
_NAME = re.compile(r'data-name="([^"]*)"')


def highlight_svg(svg: str, names: Iterable[str], colour: str = HIGHLIGHT) -> str:
    """`svg` (from render_svg) with the boxes of `names` outlined in `colour` and classed
    "wb-node wb-highlight"; names are node names, in either panel."""
    wanted = set(names)
    if not wanted:
        return svg

    def mark(match: re.Match) -> str:
        name = _NAME.search(match["attrs"])
        if name is None or html.unescape(name.group(1)) not in wanted:
            return match.group(0)
        return (f'<g class="wb-node wb-highlight"{match["attrs"]}>{match["title"] or ""}'
                f'{match["rect"]}stroke="{colour}" stroke-width="4.5"')
    return _NODE.sub(mark, svg)


class GraphTab:
    def __init__(self, app: "Workbench"):
        self.app = app
        self.checkboxes = {name: widgets.Checkbox(value=True, description=name, indent=False,
                                                  layout=widgets.Layout(width="210px")) for name in pass_names()}
        for box in self.checkboxes.values():
            box.observe(self._on_pass_toggle, "value")
        self.counts = widgets.HTML()
        self.error = widgets.HTML()
        self.fused = widgets.Dropdown(description="fused node", options=[], layout=widgets.Layout(width="420px"),
                                      style={"description_width": "80px"})
        self.fused.observe(lambda _: self._on_fused(), "value")
        self.originals = widgets.HTML()
        self.svg = widgets.HTML()
        self.netron_button = widgets.Button(description="Open in Netron", icon="external-link",
                                            tooltip="serves both graphs with Netron; needs a browser on this machine")
        self.netron_button.on_click(lambda _: self.open_netron())
        self.netron_error = widgets.HTML()
        self.netron_output = widgets.Output()
        self._svg_text = ""
        self._netron = None
        self.highlighted: set[str] = set()
        passes = widgets.GridBox(list(self.checkboxes.values()),
                                 layout=widgets.Layout(grid_template_columns="repeat(4, 220px)"))
        self.widget = widgets.VBox([
            widgets.HTML("<b>passes</b> (untick to skip one; the graph is re-optimized at once)"), passes,
            self.counts, self.error, widgets.HBox([self.fused, self.netron_button]), self.originals,
            self.svg, self.netron_error, self.netron_output])

    # -- events ------------------------------------------------------------------------------
    def _on_pass_toggle(self, _change) -> None:
        self.app.set_disabled_passes([name for name, box in self.checkboxes.items() if not box.value])

    def _on_fused(self) -> None:
        name = self.fused.value
        optimized = self.app.optimized
        if not name or optimized is None:
            self.originals.value = ""
            self.highlight(())
            return
        node = next((n for n in optimized.nodes if n.name == name), None)
        sources = source_nodes_of(node) if node is not None else []
        ops = {n.name: n.op_type for n in self.app.graph.nodes} if self.app.graph is not None else {}
        items = "".join(f"<li><code>{esc(s)}</code> ({esc(ops.get(s, '?'))})</li>" for s in sources)
        self.originals.value = (f"<b>{esc(name)}</b> ({esc(node.op_type if node is not None else '?')}) "
                                f"replaced {len(sources)} original nodes:<ul style='margin:2px 0'>{items}</ul>")
        self.highlight([name, *sources])

    def open_netron(self) -> None:
        self.netron_error.value = ""
        if self.app.graph is None:
            self.netron_error.value = error_box("load a model first")
            return
        if self._netron is not None:
            self._netron.stop()
        try:
            self._netron = wb.view(self.app.graph, self.app.optimized)
        except Exception as exc:                    # netron missing or no port: say so, keep the SVG
            self.netron_error.value = error_box(f"Netron is not available here: {exc}")
            return
        show_html(self.netron_output, self._netron._repr_html_(), repr(self._netron))

    # -- drawing -----------------------------------------------------------------------------
    def set_pass_boxes(self, disabled: Iterable[str]) -> None:
        """Tick the boxes to match `disabled` without re-running optimize once per box."""
        disabled = set(disabled)
        for name, box in self.checkboxes.items():
            box.unobserve(self._on_pass_toggle, "value")
            box.value = name not in disabled
            box.observe(self._on_pass_toggle, "value")

    def highlight(self, names: Iterable[str]) -> None:
        self.highlighted = set(names)
        self.svg.value = self._wrap(highlight_svg(self._svg_text, self.highlighted))

    def refresh(self) -> None:
        app = self.app
        self.error.value = error_box(app.optimize_error or "")
        if app.graph is None:
            self.counts.value = notice_box("no model loaded")
            self._svg_text, self.fused.options = "", []
            self.svg.value = ""
            return
        after = app.optimized if app.optimized is not None else app.graph
        report = app.report
        done = ", ".join(f"{p.name} {p.rewrites}" for p in report.passes if p.rewrites) if report else ""
        self.counts.value = (f"<b>{len(app.graph.nodes)}</b> nodes before, <b>{len(after.nodes)}</b> after "
                             f"optimization; rewrites: {esc(done or 'none')}")
        try:
            self._svg_text = wb.render_svg(app.graph, after).svg
        except Exception as exc:                   # a layout failure must not take the tab down
            self._svg_text = ""
            self.error.value += error_box(f"could not draw the graph: {exc}")
        fused = [(f"{n.name} ({n.op_type})", n.name) for n in after.nodes if n.domain == WORKBENCH_DOMAIN]
        previous = self.fused.value
        self.fused.options = [("(choose a fused node)", "")] + fused
        self.fused.value = previous if previous in {v for _, v in fused} else ""
        self._on_fused()

    @staticmethod
    def _wrap(svg: str) -> str:
        return f'<div class="wb-svg">{svg}</div>' if svg else ""
