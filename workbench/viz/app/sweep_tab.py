"""Sweep tab: a precision x batch grid (`wb.sweep`) run as a job with progress and Cancel, shown as
heatmaps of latency and throughput and a Pareto plot of latency against accuracy, exportable as CSV.

The grid is built from the app's current optimized graph. Accuracy is top-1 on the digits test
split for the bundled model; for any other model it is top-1 agreement with the FP32 reference on
synthetic feeds (said in the tab), which is what a precision choice can be judged on without labels.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import ipywidgets as widgets
import pandas as pd

import workbench as wb
from workbench.builder import Profile
from workbench.builder.config import PRECISIONS
from workbench.evaluate.metrics import predict
from workbench.viz.app.common import error_box, esc, notice_box, show_figure, table_html
from workbench.viz.app.jobs import JobPanel
from workbench.viz.app.plots import plot_sweep_heatmaps
from workbench.viz.sweep_plots import plot_pareto

if TYPE_CHECKING:
    from workbench.viz.app.main import Workbench

__all__ = ["SweepTab", "parse_batches"]


def parse_batches(text: str) -> list[int]:
    try:
        batches = sorted({int(part) for part in text.replace(";", ",").split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"batch sizes must be integers separated by commas, got {text!r}") from None
    if not batches or batches[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {text!r}")
    return batches


class SweepTab:
    def __init__(self, app: "Workbench"):
        self.app = app
        self.precisions = {p: widgets.Checkbox(value=p in ("fp32", "fp16", "int8"), description=p, indent=False,
                                               layout=widgets.Layout(width="80px")) for p in PRECISIONS}
        self.precision_error = widgets.HTML("")
        self.batches = widgets.Text(value="1, 8, 32", description="batch sizes", layout=widgets.Layout(width="260px"))
        self.iters = widgets.IntSlider(value=5, min=1, max=50, description="timed runs", continuous_update=False)
        self.batch_error = widgets.HTML("")
        self.run_button = widgets.Button(description="Run sweep", icon="th", button_style="primary")
        self.run_button.on_click(lambda _: self.execute(background=app.background))
        self.job = JobPanel("sweep", app.job_lock)
        self.error = widgets.HTML("")
        self.note = widgets.HTML("")
        self.heatmaps = widgets.Output()
        self.pareto = widgets.Output()
        self.table = widgets.HTML("")
        self.csv_path = widgets.Text(value=os.path.join(os.getcwd(), "workbench_sweep.csv"), description="CSV file",
                                     layout=widgets.Layout(width="520px"))
        self.export_button = widgets.Button(description="Export CSV", icon="download")
        self.export_button.on_click(lambda _: self.export_csv())
        self.export_status = widgets.HTML("")
        self.widget = widgets.VBox([
            widgets.HBox([widgets.HTML("<b>precisions</b>&nbsp;"), *self.precisions.values()]), self.precision_error,
            widgets.HBox([self.batches, self.iters]), self.batch_error,
            widgets.HBox([self.run_button, self.job.widget]), self.error, self.note,
            self.heatmaps, self.pareto, self.table,
            widgets.HBox([self.csv_path, self.export_button]), self.export_status])

    # -- running -----------------------------------------------------------------------------
    def settings(self) -> tuple[list[str], list[int] | str]:
        chosen = [p for p, box in self.precisions.items() if box.value]
        try:
            return chosen, parse_batches(self.batches.value)
        except ValueError as exc:
            return chosen, str(exc)

    def show(self, precisions: Sequence[str], batch_sizes: Sequence[int], iters: int) -> None:
        for name, box in self.precisions.items():
            box.value = name in precisions
        self.batches.value = ", ".join(map(str, batch_sizes))
        self.iters.value = max(self.iters.min, min(int(iters), self.iters.max))

    def execute(self, background: bool) -> bool:
        app = self.app
        for widget in (self.precision_error, self.batch_error, self.error, self.export_status):
            widget.value = ""
        app.last_error = None
        precisions, batches = self.settings()
        if isinstance(batches, str):
            return self._refuse(self.batch_error, batches)
        unknown = [p for p in precisions if p not in PRECISIONS]
        if not precisions or unknown:
            return self._refuse(self.precision_error, f"choose at least one of {', '.join(PRECISIONS)}"
                                + (f"; unknown: {unknown}" if unknown else ""))
        if app.graph is None:
            return self._refuse(self.error, "no model loaded: load one with the model field above")
        if app.data is None:
            return self._refuse(self.error, f"the sweep needs input data: {app.data_error}")
        if len(app.graph.inputs) != 1:
            return self._refuse(self.error, f"wb.sweep feeds one input; this model has {len(app.graph.inputs)} "
                                            f"({', '.join(s.name for s in app.graph.inputs)})")
        if "int8" in precisions and not app.data.calibration:
            return self._refuse(self.precision_error, "int8 needs calibration data, which this model has none of")
        self.note.value = notice_box(f"sweeping {', '.join(precisions)} x batch {', '.join(map(str, batches))} ...")
        iters = self.iters.value
        return self.job.run(lambda job: self._work(precisions, batches, iters, job), self._done, self._failed,
                            background)

    def _refuse(self, widget: widgets.HTML, message: str) -> bool:
        widget.value = error_box(message)
        self.app.last_error = message
        return False

    def _work(self, precisions: list[str], batches: list[int], iters: int, job: JobPanel) -> pd.DataFrame:
        app, data = self.app, self.app.data
        graph = app.optimized if app.optimized is not None else app.graph
        labels = data.labels
        if labels is None:                      # no labels: agreement with the FP32 reference instead
            job.phase("FP32 reference outputs (labels for agreement)")
            largest = max(batches)
            reference = app.reference_engine(Profile(1, largest, largest), job.report)
            labels = predict(reference, data.images, largest, input_name=data.input_name).argmax(axis=-1)
        calibration = next(iter(data.calibration.values()))() if "int8" in precisions else None
        job.report(0, len(precisions) * len(batches), "building the first precision")
        return wb.sweep(graph, precisions, batches, images=data.images, labels=labels, input_name=data.input_name,
                        calibration_data=calibration, iters=iters, progress=job.report)

    def _done(self, df: pd.DataFrame) -> None:
        self.app.sweep_results = df
        self.app.mark_stale("Sweep")

    def _failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        target = self.precision_error if "int8" in text or "calibrat" in text or "precision" in text else self.error
        target.value = error_box(text)
        self.app.last_error = text

    # -- showing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        df = self.app.sweep_results
        if df is None or not len(df):
            self.note.value = notice_box("no sweep yet: choose precisions and batch sizes, then Run sweep")
            show_figure(self.heatmaps, None)
            show_figure(self.pareto, None)
            self.table.value = ""
            return
        data = self.app.data
        what = "top-1 accuracy on " + data.description if data is not None and data.labelled else \
            "accuracy = top-1 agreement with the FP32 reference (no labels)"
        self.note.value = notice_box(f"{len(df)} rows; {what}; CPU timings emulate each precision, so lower "
                                     "precisions are not faster here as they are on a GPU")
        show_figure(self.heatmaps, plot_sweep_heatmaps(df), "sweep heatmaps")
        show_figure(self.pareto, plot_pareto(df), "pareto")
        self.table.value = table_html(df, formats={"accuracy": ".2%", "build_s": ".2f"})

    def export_csv(self, path: str | os.PathLike | None = None) -> str | None:
        """Write the sweep results as CSV and show where; returns the path (None if nothing to write)."""
        df = self.app.sweep_results
        if df is None or not len(df):
            self.export_status.value = error_box("nothing to export yet: run a sweep first")
            return None
        path = os.path.abspath(os.fspath(path or self.csv_path.value))
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            df.to_csv(path, index=False)
        except OSError as exc:
            self.export_status.value = error_box(f"could not write {path}: {exc}")
            return None
        self.csv_path.value = path
        self.export_status.value = f"wrote {len(df)} rows to <code>{esc(path)}</code>"
        return path
