"""Accuracy tab: every build against the FP32 reference (`wb.compare`, measured right after each
build), digits accuracy where labels exist, and for a chosen build the layer-wise error
(`wb.compare_layers`) that shows where a precision starts to lose.

Two references, on purpose: the end-to-end numbers compare with the model as loaded (no passes,
FP32), so they include what fusion and pruning changed; the layer-wise plot compares with the same
graph built in FP32, so the tensors line up one to one and only the precision differs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

import workbench as wb
from workbench.evaluate.compare import plot_layer_errors
from workbench.viz.app.common import choose_latest, error_box, notice_box, show_figure, table_html
from workbench.viz.app.measure import engine_batch_range
from workbench.viz.app.plots import plot_build_accuracy

if TYPE_CHECKING:
    import pandas as pd

    from workbench.viz.app.history import BuildRecord
    from workbench.viz.app.main import Workbench

__all__ = ["AccuracyTab"]
SUMMARY_COLUMNS = ["build", "precision", "accuracy", "top1_agreement", "rel_l2"]


class AccuracyTab:
    def __init__(self, app: "Workbench"):
        self.app = app
        self.note = widgets.HTML("")
        self.table = widgets.HTML("")
        self.summary_plot = widgets.Output()
        self.build = widgets.Dropdown(description="build", options=[], layout=widgets.Layout(width="300px"))
        self.build.observe(lambda _: None if self._quiet else self.render_layers(), "value")
        self.layer_note = widgets.HTML("")
        self.layer_plot = widgets.Output()
        self._quiet = False
        self._layer_errors: dict[int, "pd.DataFrame"] = {}
        self.widget = widgets.VBox([self.note, self.table, self.summary_plot, self.build, self.layer_note,
                                    self.layer_plot])

    def refresh(self) -> None:
        app, history = self.app, self.app.history
        data = app.data.description if app.data is not None else "no input data for this model"
        if not len(history):
            self.note.value = notice_box(f"no build yet: build one in the Build tab (evaluation data: {data})")
            self.table.value = ""
            show_figure(self.summary_plot, None)
            self.build.options = []
            return
        labelled = app.data is not None and app.data.labelled
        self.note.value = notice_box(
            f"reference: the model as loaded, FP32 on the CPU; evaluation data: {data}"
            + ("" if labelled else "; without labels, accuracy is replaced by top-1 agreement with FP32"))
        summary = history.summary()
        comparisons = history.comparisons()
        extra = [c for c in ("max_abs", "cosine", "sqnr_db", "reference.accuracy") if c in comparisons]
        table = summary[[c for c in SUMMARY_COLUMNS if c in summary]]
        if len(comparisons):
            table = table.merge(comparisons.groupby("build", sort=False)[extra].first().reset_index(),
                                on="build", how="left")
        self.table.value = table_html(table, formats={"accuracy": ".2%", "top1_agreement": ".2%",
                                                      "reference.accuracy": ".2%", "rel_l2": ".3g"})
        if summary["rel_l2"].notna().any():
            show_figure(self.summary_plot, plot_build_accuracy(summary), "accuracy per build")
        choose_latest(self, self.build, [r.label for r in history])
        self.render_layers()

    def layer_errors(self, record: "BuildRecord") -> "pd.DataFrame":
        """compare_layers of the build against its own graph in FP32 (cached per build)."""
        if record.index not in self._layer_errors:
            accepted = engine_batch_range(record.engine)
            quiet = {"progress": lambda done, total, layer: None}       # no tqdm bar inside the app
            config = (wb.BuilderConfig(precision="fp32", profile=(accepted.min, accepted.opt, accepted.max), **quiet)
                      if record.engine.profile is not None else wb.BuilderConfig(precision="fp32", **quiet))
            reference = wb.build(record.graph, config)
            feeds = self.app.data.feeds(accepted.opt)
            self._layer_errors[record.index] = wb.compare_layers(record.engine, reference, feeds)
        return self._layer_errors[record.index]

    def render_layers(self) -> None:
        history = self.app.history
        if not len(history) or not self.build.value:
            return
        record = history[self.build.value]
        if self.app.data is None:
            self.layer_note.value = notice_box("layer-wise error needs input data, which this model has none of")
            show_figure(self.layer_plot, None)
            return
        try:
            df = self.layer_errors(record)
        except Exception as exc:                 # shown in the tab; the rest of the app stays usable
            self.layer_note.value = error_box(f"layer-wise comparison of {record.label} failed: "
                                              f"{type(exc).__name__}: {exc}")
            show_figure(self.layer_plot, None)
            return
        jump = df.loc[df["first_jump"], "layer"]
        self.layer_note.value = notice_box(
            f"{record.label}: rel_l2 of every tensor against the same graph in FP32; "
            + (f"the error is born at layer {jump.iloc[0]!r}" if len(jump) else "no layer stands out"))
        show_figure(self.layer_plot, plot_layer_errors(df), "layer-wise error")
