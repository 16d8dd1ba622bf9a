"""Graph views: Netron in an iframe (`view`) and a static SVG with fusions highlighted (`render_svg`).

    v = wb.view(graph, optimized)                 # live, needs netron and a browser on this machine
    wb.render_svg(graph, optimized, focus="inception_3a.*").save("3a.svg")   # static, offline
"""
from workbench.viz.netron import NetronView, ViewError, view
from workbench.viz.svg import SvgView, op_class, render_svg

__all__ = ["view", "NetronView", "render_svg", "SvgView", "ViewError", "op_class"]
