"""Performance tab: latency and throughput against batch size for every build in the history, and
for one chosen build its per-layer time bars and a roofline against the device's limits.

The plots are `workbench.viz.app.plots` functions over the history's DataFrames; this tab only
chooses the build and puts the figures into Output widgets.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

from workbench.viz.app.common import choose_latest, cuda_available, notice_box, show_figure
from workbench.viz.app.measure import engine_batch_range
from workbench.viz.app.plots import device_limits, plot_latency_vs_batch, plot_layer_times, plot_roofline

if TYPE_CHECKING:
    from workbench.viz.app.main import Workbench

__all__ = ["PerformanceTab"]


class PerformanceTab:
    def __init__(self, app: "Workbench"):
        self.app = app
        self.note = widgets.HTML("")
        self.latency_plot = widgets.Output()
        self.build = widgets.Dropdown(description="build", options=[], layout=widgets.Layout(width="300px"))
        self.build.observe(lambda _: None if self._quiet else self.render_build(), "value")
        self.layer_note = widgets.HTML("")
        self.layer_plot = widgets.Output()
        self.roofline_plot = widgets.Output()
        self._quiet = False
        self.widget = widgets.VBox([self.note, self.latency_plot, self.build, self.layer_note,
                                    widgets.HBox([self.layer_plot, self.roofline_plot])])

    def refresh(self) -> None:
        history = self.app.history
        gpu = "" if cuda_available() else "no GPU: CPU backend; the timings are CPU timings. "
        if not len(history):
            self.note.value = notice_box(gpu + "no build yet: build one in the Build tab")
            for output in (self.latency_plot, self.layer_plot, self.roofline_plot):
                show_figure(output, None)
            self.build.options = []
            return
        self.note.value = notice_box(gpu + f"{len(history)} build(s); each was timed at the batch sizes its "
                                           "profile accepts (min, opt, max and powers of two between)")
        show_figure(self.latency_plot, plot_latency_vs_batch(history.latency()), "latency vs batch")
        choose_latest(self, self.build, [r.label for r in history])
        self.render_build()

    def render_build(self) -> None:
        history = self.app.history
        if not len(history) or not self.build.value:
            return
        record = history[self.build.value]
        if record.profile is None or not len(record.profile):
            reasons = "; ".join(n for n in record.notes if "profile" in n) or "no per-layer profile was measured"
            self.layer_note.value = notice_box(f"{record.label}: {reasons}")
            show_figure(self.layer_plot, None)
            show_figure(self.roofline_plot, None)
            return
        limits = device_limits(record.settings.get("backend", "cpu"))
        batch = engine_batch_range(record.engine).opt
        self.layer_note.value = notice_box(f"{record.label}: per-layer times at batch {batch}; "
                                           f"roofline limits: {limits['source']}")
        show_figure(self.layer_plot, plot_layer_times(record.profile, title=f"time per layer, {record.label}"),
                    "layer times")
        show_figure(self.roofline_plot, plot_roofline(record.profile, limits), "roofline")
