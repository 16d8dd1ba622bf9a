"""Build tab: the controls, a Build button with progress, Cancel and a live log, and the result.

A build is one job (see jobs.py): optimize's output (optionally 2:4-pruned) goes through `wb.build`
with `BuilderConfig.progress` wired to the progress bar, then `measure_engine` times it, profiles
its layers and compares it with the FP32 reference. The record lands in the history and every tab
refreshes. A failure is shown next to the control that caused it, never only as a traceback.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

import workbench as wb
from workbench.quant.errors import CalibrationError
from workbench.viz.app.build_controls import (BuildControls, config_precision, parse_shapes, sparsity_mode,
                                              supported_precision)
from workbench.viz.app.common import esc, notice_box, table_html
from workbench.viz.app.data import CALIBRATION_NONE
from workbench.viz.app.history import BuildRecord
from workbench.viz.app.jobs import JobPanel, WidgetLogHandler
from workbench.viz.app.measure import measure_engine

if TYPE_CHECKING:
    from workbench.viz.app.main import Workbench

__all__ = ["BuildTab", "control_for"]
log = logging.getLogger(__name__)

_CONFIG_KEYS = ("backend", "batch_size", "profile", "calibrator", "calibration_cache", "tactic_sources",
                "timing_cache", "max_workspace_bytes", "builder_level", "strict", "layer_precisions")


def control_for(exc: BaseException) -> str:
    """Which control group a build error belongs next to."""
    text = str(exc).lower()
    if isinstance(exc, CalibrationError) or "int8" in text or "calibrat" in text:
        return "calibration" if "calibrator" in text and "int8" not in text else "precision"
    if "input_shapes" in text or "input shapes" in text or "timing" in text or "workspace" in text:
        return "advanced"
    if "profile" in text or "batch" in text:
        return "batch"
    if "precision" in text:
        return "precision"
    if "backend" in text or "tactic" in text or "cuda" in text:
        return "backend"
    if "builder_level" in text:
        return "level"
    return "general"


class BuildTab:
    def __init__(self, app: "Workbench"):
        self.app = app
        self.controls = BuildControls()
        self.build_button = widgets.Button(description="Build", icon="cogs", button_style="primary")
        self.build_button.on_click(lambda _: self.execute(self.controls.settings(), background=app.background))
        self.job = JobPanel("build", app.job_lock)
        self.log_view = widgets.HTML("")
        self.log_handler = WidgetLogHandler(self.log_view)
        self.result = widgets.HTML("")
        self.tuning = widgets.HTML("")
        self.widget = widgets.VBox(self.controls.rows() + [
            widgets.HBox([self.build_button, self.job.widget]), self.controls.errors["general"], self.result,
            widgets.HTML("<b>build log</b>"), self.log_view, self.tuning])

    # -- starting a build --------------------------------------------------------------------
    def execute(self, settings: dict[str, Any], background: bool) -> bool:
        """Validate, then build in a job; False if it did not start (the reason is shown)."""
        app, controls = self.app, self.controls
        controls.clear_errors()
        app.last_error = None
        if app.graph is None:
            return self._refuse("general", "no model loaded: load one with the model field above")
        why_not = supported_precision(settings)
        if why_not:
            return self._refuse("precision", why_not)
        if settings.get("backend", "cpu") not in controls.backend.options:
            return self._refuse("backend", f"backend {settings['backend']!r} is not available here "
                                           f"(available: {', '.join(controls.backend.options)}); no GPU: CPU backend")
        try:
            settings = {**settings, "input_shapes": parse_shapes(settings.get("input_shapes") or "")
                        if not isinstance(settings.get("input_shapes"), dict) else settings["input_shapes"]}
        except ValueError as exc:
            return self._refuse("advanced", str(exc))
        self.log_handler.clear()
        self.result.value = notice_box("building ...")
        started = self.job.run(lambda job: self._work(settings, job), self._built, self._failed, background)
        if not started:
            self.result.value = ""
            app.last_error = "another build or sweep is running; wait for it or cancel it"
        return started

    def _refuse(self, group: str, message: str) -> bool:
        self.controls.show_error(group, message)
        self.app.last_error = message
        return False

    # -- the job -----------------------------------------------------------------------------
    def _work(self, settings: dict[str, Any], job: JobPanel) -> BuildRecord:
        app = self.app
        detach = self.log_handler.attach()
        try:
            graph = app.optimized if app.optimized is not None else app.graph
            notes = []
            config_args = {k: settings[k] for k in _CONFIG_KEYS if settings.get(k) is not None}
            if settings.get("precision") != "mixed":
                config_args.pop("strict", None)            # strict only means something for an allowed set
            sparsity = sparsity_mode(settings.get("sparsity"))
            if sparsity != "disable":
                config_args["sparsity"] = sparsity
            config = wb.BuilderConfig(precision=config_precision(settings), progress=job.report,
                                      calibration_data=self._calibration(settings),
                                      input_shapes=settings.get("input_shapes"), **config_args)
            job.phase(f"building {settings.get('precision')} on {config.backend}")
            log.info("building %s: %s", graph.name, _describe_settings(settings))
            started = time.perf_counter()
            engine = wb.build(graph, config)
            seconds = time.perf_counter() - started
            log.info("measuring: latency per batch, per-layer profile, FP32 reference (its build is logged too)")
            measured = measure_engine(engine, app.data, app.reference_engine, job.phase)
            public = {k: v for k, v in settings.items() if k != "calibration_data" and v is not None}
            if settings.get("calibration_data") is not None:
                public["calibration"] = "given calibration_data"
            return BuildRecord(app.history.next_index(), graph.name, public, engine, graph, seconds,
                               measured.latency, measured.profile, measured.comparison, notes + measured.notes)
        finally:
            detach()

    def _calibration(self, settings: dict[str, Any]):
        if settings.get("calibration_data") is not None:
            return settings["calibration_data"]
        choice = settings.get("calibration") or CALIBRATION_NONE
        wants_int8 = settings.get("precision") == "int8" or (settings.get("precision") == "mixed"
                                                             and "int8" in (settings.get("allowed") or ()))
        if choice == CALIBRATION_NONE or not wants_int8:
            return None
        makers = self.app.data.calibration if self.app.data is not None else {}
        if choice not in makers:
            raise CalibrationError(f"calibration data {choice!r} is not available for this model; "
                                   f"choose one of {[CALIBRATION_NONE, *makers]}")
        return makers[choice]()

    def _built(self, record: BuildRecord) -> None:
        app = self.app
        app.history.add(record)
        app.refresh()
        self.result.value = self.describe(record)
        self.tuning.value = self._tuning_table(record)

    def _failed(self, exc: BaseException) -> None:
        group = control_for(exc)
        message = f"{type(exc).__name__}: {exc}"
        if group == "precision" and isinstance(exc, CalibrationError):
            message += "\n(in the app: choose calibration data next to the calibrator below)"
        self.controls.show_error(group, message)
        self.app.last_error = message
        self.result.value = ""

    # -- showing the result ------------------------------------------------------------------
    @staticmethod
    def describe(record: BuildRecord) -> str:
        engine = record.engine
        parts = [f"<b>built {esc(record.label)}</b>: {len(engine.layers)} layers in {record.build_seconds:.2f} s"]
        if len(record.latency):
            last = record.latency.iloc[-1]
            parts.append(f"median latency {last['latency.median_ms']:.3f} ms at batch {int(last['batch'])} "
                         f"({last['throughput.per_s']:.0f} items/s)")
        if record.accuracy is not None:
            parts.append(f"accuracy {100 * record.accuracy:.2f}%")
        cache = engine.meta.get("timing_cache")
        if cache and cache.get("path"):
            parts.append(f"timing cache {esc(str(cache.get('path')))}: {cache.get('hits')} hits, "
                         f"{cache.get('misses')} misses")
        memory = getattr(engine, "memory", None)
        if memory:
            parts.append(f"activation arena {memory['arena_bytes'] / 1024:.1f} KiB "
                         f"(naive {memory['naive_bytes'] / 1024:.1f} KiB)")
        html = "; ".join(parts)
        return html + "".join(notice_box(n) for n in record.notes)

    @staticmethod
    def _tuning_table(record: BuildRecord) -> str:
        log_df = record.build_log
        if log_df is None or not len(log_df):
            return notice_box("autotuner decisions: this builder keeps no build_log")
        columns = [c for c in ("layer", "op", "precision", "candidates", "times_ms", "choice", "reason", "cached")
                   if c in log_df]
        df = log_df[columns]
        if "times_ms" in df:
            df = df.assign(times_ms=[", ".join(f"{k} {v:.3g}" for k, v in (t or {}).items()) for t in df["times_ms"]])
        return "<b>autotuner decisions</b>" + table_html(df, formats={})



def _describe_settings(settings: dict[str, Any]) -> str:
    shown = ("precision", "allowed", "batch_size", "profile", "backend", "builder_level", "calibration", "sparsity",
             "timing_cache", "tactic_sources")
    quantized = settings.get("precision") == "int8" or (settings.get("precision") == "mixed"
                                                         and "int8" in (settings.get("allowed") or ()))
    hidden = {"allowed"} if settings.get("precision") != "mixed" else set()
    hidden |= {"calibration"} if not quantized else set()
    return ", ".join(f"{k}={settings[k]}" for k in shown if k not in hidden
                     and settings.get(k) not in (None, "", [], False, "disable"))
