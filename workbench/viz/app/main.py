"""`Workbench`: the whole road in one ipywidgets app: Graph, Build, Layers, Performance, Accuracy
and Sweep tabs over one model and the history of its builds.

The app is a widget (display it, or leave `app` last in a cell) and an object with the same
actions as its buttons, so notebooks and tests drive it without clicking:

    >>> app = wb.Workbench(digits_model_path())
    >>> engine = app.build(precision="fp32", batch_size=8)      # synchronous; recorded; tabs refreshed
    >>> app.history.summary()
    >>> app.sweep(["fp32", "fp16"], [1, 8]); app.export_csv("sweep.csv")
    >>> app

Nothing here raises at the user for a bad model or a bad setting: the error is shown in the app,
next to what caused it (and kept in `app.last_error`), and the app stays usable.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Sequence

import ipywidgets as widgets
import pandas as pd

import workbench as wb
from workbench.builder import Profile
from workbench.ir import Graph
from workbench.runtime import Engine
from workbench.viz.app.accuracy_tab import AccuracyTab
from workbench.viz.app.build_tab import BuildTab
from workbench.viz.app.common import STYLE, device_note, error_box, esc, notice_box
from workbench.viz.app.data import ModelData, model_data
from workbench.viz.app.graph_tab import GraphTab
from workbench.viz.app.history import BuildHistory
from workbench.viz.app.layers_tab import LayersTab
from workbench.viz.app.performance_tab import PerformanceTab
from workbench.viz.app.sweep_tab import SweepTab

__all__ = ["Workbench", "TAB_TITLES"]

TAB_TITLES = ("Graph", "Build", "Layers", "Performance", "Accuracy", "Sweep")


def _zoo_names() -> list[str]:
    from workbench.evaluate.zoo import ZOO
    return ["digits", *ZOO]


class Workbench(widgets.VBox):
    """The interactive workbench for one model (a path, an `onnx.ModelProto`, a `wb.Graph`, "digits"
    or a zoo name such as "resnet18").

    Args:
        model: what to load first; None starts empty (type a path and press Load).
        background: run button-started builds and sweeps in a background thread, so the kernel can
            take a Cancel click (the programmatic `build` / `sweep` always run synchronously).
    """

    def __init__(self, model: Any = None, *, background: bool = True):
        super().__init__()
        self.add_class("wb-app")
        self.background = background
        self.job_lock = threading.Lock()
        self.history = BuildHistory()
        self.sweep_results: pd.DataFrame | None = None
        self.graph: Graph | None = None
        self.optimized: Graph | None = None
        self.report = None
        self.source: Any = None
        self.data: ModelData | None = None
        self.data_error = ""
        self.optimize_error = ""
        self.disabled_passes: list[str] = []
        self.last_error: str | None = None
        self._references: dict[tuple[int, int, int], Engine] = {}

        self.model_path = widgets.Text(placeholder="path to a .onnx file, or one of: " + ", ".join(_zoo_names()),
                                       description="model", layout=widgets.Layout(width="560px"))
        self.load_button = widgets.Button(description="Load", icon="folder-open")
        self.load_button.on_click(lambda _: self.load(self.model_path.value.strip()))
        self.load_error = widgets.HTML("")
        self.model_info = widgets.HTML("")
        self.device = widgets.HTML(notice_box(device_note()))
        self.graph_tab = GraphTab(self)
        self.build_tab = BuildTab(self)
        self.layers_tab = LayersTab(self)
        self.performance_tab = PerformanceTab(self)
        self.accuracy_tab = AccuracyTab(self)
        self.sweep_tab = SweepTab(self)
        tabs = (self.graph_tab, self.build_tab, self.layers_tab, self.performance_tab, self.accuracy_tab,
                self.sweep_tab)
        self.tabs = widgets.Tab(children=[t.widget for t in tabs], titles=TAB_TITLES)
        self._tabs = dict(zip(TAB_TITLES, tabs))
        self._stale: set[str] = set()       # plot tabs redraw when shown: matplotlib is the slow part
        self.tabs.observe(lambda _: self._render_visible(), "selected_index")
        self.children = [widgets.HTML(STYLE + "<b style='font-size:15px'>Inference Workbench</b>"),
                         widgets.HBox([self.model_path, self.load_button]), self.load_error, self.model_info,
                         self.device, self.tabs]
        if model is not None:
            self.load(model)
        else:
            self.refresh()
            self.graph_tab.refresh()

    # -- the model ---------------------------------------------------------------------------
    def load(self, model: Any) -> bool:
        """Load a model into the app; on failure the error is shown and the previous model stays."""
        self.load_error.value = ""
        name = model if isinstance(model, (str, os.PathLike)) else type(model).__name__
        try:
            if isinstance(model, str) and not model:
                raise wb.errors.ModelLoadError("type a model path (or a zoo name) first")
            graph = _load_graph(model)
        except Exception as exc:                        # any load failure is shown, never raised at the user
            self.last_error = f"could not load {name}: {type(exc).__name__}: {exc}"
            self.load_error.value = error_box(self.last_error)
            self.model_path.value = str(model) if isinstance(model, (str, os.PathLike)) else ""
            return False
        self.graph, self.source, self._references = graph, model, {}
        self.model_path.value = os.fspath(model) if isinstance(model, (str, os.PathLike)) else graph.name
        try:
            self.data, self.data_error = model_data(graph, model), ""
        except Exception as exc:                        # a model we cannot feed can still be optimized and built
            self.data, self.data_error = None, f"{type(exc).__name__}: {exc}"
        self.build_tab.controls.set_calibration_choices(list(self.data.calibration) if self.data else [])
        self.optimize()
        self.refresh()
        return True

    def set_disabled_passes(self, names: Iterable[str]) -> None:
        """Skip these passes (the Graph tab's unticked boxes) and re-optimize."""
        self.disabled_passes = list(names)
        self.graph_tab.set_pass_boxes(self.disabled_passes)
        self.optimize()

    def optimize(self) -> None:
        if self.graph is None:
            return
        try:
            self.optimized, self.report = wb.optimize(self.graph, disable=self.disabled_passes)
            self.optimize_error = ""
        except Exception as exc:                        # builds then use the graph as loaded
            self.optimized, self.report = None, None
            self.optimize_error = f"optimize failed, builds use the graph as loaded: {type(exc).__name__}: {exc}"
        self.graph_tab.refresh()
        self._describe_model()

    def reference_engine(self, profile: Profile, progress=None) -> Engine:
        """The FP32 reference for a batch range: the model as loaded, no passes, on the CPU (cached).
        `progress` is BuilderConfig.progress (the app passes its job's, so Cancel reaches it)."""
        key = (profile.min, profile.opt, profile.max)
        if key not in self._references:
            config = wb.BuilderConfig(backend="cpu", precision="fp32", profile=key,
                                      progress=progress or _no_progress_bar)
            self._references[key] = wb.build(self.graph, config)
        return self._references[key]

    # -- actions, as the buttons do them -----------------------------------------------------
    def build(self, precision: str = "fp32", batch_size: int | None = None, **settings: Any) -> Engine | None:
        """Build synchronously, record the build in the history and refresh every tab; the Build tab's
        controls move to show what was built. Settings not passed take their defaults (not whatever
        the controls show), so a call means the same thing every time.

        Args:
            precision: fp32, tf32, fp16, bf16, int8, or "mixed" with allowed=["fp16", "int8"] (an
                allowed set; fp32 is always allowed) and strict=.
            batch_size: a fixed batch (default 8); or pass profile=(min, opt, max) instead.
            settings: backend, builder_level, calibrator, calibration (a name from the calibration
                dropdown, default the first the model has, or "none"), calibration_data (feed dicts),
                sparsity ("disable", "enable", "force"), timing_cache, tactic_sources, input_shapes,
                max_workspace_bytes, calibration_cache, layer_precisions.

        Returns:
            The engine, or None if the build failed (the error is shown next to its control and
            kept in `app.last_error`).
        """
        merged = {**self.build_tab.controls.defaults(), **settings, "precision": precision}
        if batch_size is not None or merged.get("profile") is None:
            merged.pop("profile", None)
            merged["batch_size"] = batch_size if batch_size is not None else merged["batch_size"]
        else:
            merged.pop("batch_size", None)
        self.build_tab.controls.show(merged)
        if not self.build_tab.execute(merged, background=False) or self.build_tab.job.outcome != "done":
            return None
        return self.history.latest.engine

    def sweep(self, precisions: Sequence[str] = ("fp32", "fp16", "int8"), batch_sizes: Sequence[int] = (1, 8, 32),
              iters: int = 5) -> pd.DataFrame | None:
        """Run the Sweep tab's grid synchronously; the results are also `app.sweep_results`."""
        self.sweep_tab.show(precisions, batch_sizes, iters)
        if not self.sweep_tab.execute(background=False) or self.sweep_tab.job.outcome != "done":
            return None
        return self.sweep_results

    def show_sweep(self, results: pd.DataFrame) -> None:
        """Show a `wb.sweep` DataFrame made elsewhere in the Sweep tab (heatmaps, Pareto, CSV export)."""
        missing = [c for c in ("precision", "batch", "latency.median_ms", "throughput.per_s", "accuracy")
                   if c not in results]
        if missing:
            raise ValueError(f"show_sweep needs wb.sweep's columns; missing {missing}")
        self.sweep_results = results
        self.mark_stale("Sweep")

    def export_csv(self, path: str | os.PathLike | None = None) -> str | None:
        """Write `sweep_results` as CSV (the Sweep tab's Export button); returns the path."""
        return self.sweep_tab.export_csv(path)

    def cancel(self) -> None:
        self.build_tab.job.cancel()
        self.sweep_tab.job.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for button-started background work; True once nothing runs."""
        return self.build_tab.job.wait(timeout) and self.sweep_tab.job.wait(timeout)

    # -- views -------------------------------------------------------------------------------
    def show_tab(self, title: str) -> None:
        """Select a tab by title ("Performance"); a tab whose plots are out of date redraws now."""
        if title not in TAB_TITLES:
            raise ValueError(f"no tab {title!r}; tabs: {', '.join(TAB_TITLES)}")
        self.tabs.selected_index = TAB_TITLES.index(title)
        self._render_visible()

    def refresh(self) -> None:
        """After a build or a load: redraw the Layers tab now, the plot tabs when next shown."""
        self.layers_tab.refresh()
        self.mark_stale("Performance", "Accuracy", "Sweep")
        self._describe_model()

    def mark_stale(self, *titles: str) -> None:
        self._stale.update(titles)
        self._render_visible()

    def _render_visible(self) -> None:
        index = self.tabs.selected_index
        title = TAB_TITLES[index] if index is not None else None
        if title in self._stale:
            self._stale.discard(title)
            self._tabs[title].refresh()

    def _describe_model(self) -> None:
        if self.graph is None:
            self.model_info.value = notice_box("no model loaded")
            return
        inputs = ", ".join(str(s) for s in self.graph.inputs)
        after = len(self.optimized.nodes) if self.optimized is not None else "?"
        data = self.data.description if self.data is not None else f"no input data ({self.data_error})"
        self.model_info.value = (f"<b>{esc(self.graph.name)}</b>: {len(self.graph.nodes)} nodes "
                                 f"({after} after optimization); inputs {esc(inputs)}; data: {esc(data)}; "
                                 f"{len(self.history)} build(s)")

    def __repr__(self) -> str:
        model = self.graph.name if self.graph is not None else "no model"
        return f"<Workbench {model!r}: {len(self.history)} build(s), tabs {', '.join(TAB_TITLES)}>"


def _no_progress_bar(done: int, total: int, layer: str) -> None:
    """The app shows its own progress; without a callback the builder would print a tqdm bar."""


def _load_graph(model: Any) -> Graph:
    if isinstance(model, Graph):
        return model
    if isinstance(model, str) and model == "digits":
        from workbench.evaluate.datasets import digits_model_path
        return wb.load(digits_model_path())
    if isinstance(model, str) and not os.path.exists(model):
        from workbench.evaluate.zoo import ZOO
        if model in ZOO:
            return wb.load(ZOO[model](seed=0))
    return wb.load(model)
