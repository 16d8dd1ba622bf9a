"""The Build tab's controls, and the settings dict they stand for.

Settings are a plain dict (precision, batch_size or profile, backend, builder_level, calibrator,
calibration, sparsity, timing_cache, tactic_sources, input_shapes) so `Workbench.build(**settings)`
and the widgets describe a build the same way; `BuildControls.show(settings)` moves the widgets to
match a programmatic build, so what the app shows is what was built.

Each control group has an error line beside it: a failed build names the group that caused it.
"""
from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from workbench.backends import BACKENDS
from workbench.builder import config as builder_config
from workbench.builder.config import PRECISIONS
from workbench.viz.app.common import cuda_available, error_box, notice_box
from workbench.viz.app.data import CALIBRATION_NONE

__all__ = ["BuildControls", "PRECISION_CHOICES", "GROUPS", "parse_shapes", "sparsity_mode", "config_precision"]

PRECISION_CHOICES = ("fp32", "tf32", "fp16", "bf16", "int8", "mixed")
MIXED_CHOICES = ("tf32", "fp16", "bf16", "int8")         # "mixed": an allowed set, fp32 always allowed
SPARSITY_MODES = getattr(builder_config, "SPARSITY_MODES", ("disable", "force"))
GROUPS = ("precision", "batch", "calibration", "backend", "level", "advanced", "general")
_WIDE = {"description_width": "120px"}


def parse_shapes(text: str) -> dict[str, list[int]] | None:
    """"input_ids=1x128, mask=1x128" -> {"input_ids": [1, 128], "mask": [1, 128]}."""
    text = text.strip()
    if not text:
        return None
    shapes = {}
    for part in text.split(","):
        name, _, dims = part.partition("=")
        if not dims:
            raise ValueError(f"input shapes: expected name=AxBxC, got {part.strip()!r}")
        try:
            shapes[name.strip()] = [int(d) for d in dims.strip().lower().split("x")]
        except ValueError:
            raise ValueError(f"input shapes: {dims.strip()!r} of {name.strip()!r} is not AxBxC of integers") from None
    return shapes


def _label(text: str) -> widgets.Label:
    """A row title as wide as the other controls' descriptions, so the rows line up."""
    return widgets.Label(text, layout=widgets.Layout(width="124px", justify_content="flex-end",
                                                     padding="0 8px 0 0"))


def backend_choices() -> list[str]:
    """The backends that can run here: "cuda" only with a GPU."""
    return [name for name in BACKENDS if name != "cuda" or cuda_available()]


class BuildControls:
    def __init__(self):
        self.precision = widgets.ToggleButtons(options=list(PRECISION_CHOICES), value="fp32",
                                               style={"button_width": "62px"})
        self.mixed = {p: widgets.Checkbox(value=p in ("fp16", "int8"), description=p, indent=False,
                                          layout=widgets.Layout(width="70px")) for p in MIXED_CHOICES}
        self.strict = widgets.Checkbox(value=False, description="strict (lowest allowed, no timing)", indent=False)
        self.mixed_box = widgets.HBox([widgets.HTML("allowed besides fp32:&nbsp;"), *self.mixed.values(),
                                       self.strict])
        self.precision.observe(lambda _: self._show_mixed(), "value")
        self.batch_mode = widgets.ToggleButtons(options=["fixed batch", "profile"], value="fixed batch",
                                                style={"button_width": "95px"})
        self.batch = widgets.IntSlider(value=8, min=1, max=256, description="batch size",
                                       continuous_update=False)
        self.profile_min = widgets.BoundedIntText(value=1, min=1, max=65536, description="min",
                                                  layout=widgets.Layout(width="140px"))
        self.profile_opt = widgets.BoundedIntText(value=8, min=1, max=65536, description="opt",
                                                  layout=widgets.Layout(width="140px"))
        self.profile_max = widgets.BoundedIntText(value=32, min=1, max=65536, description="max",
                                                  layout=widgets.Layout(width="140px"))
        self.profile_box = widgets.HBox([self.profile_min, self.profile_opt, self.profile_max])
        self.batch_mode.observe(lambda _: self._show_batch_mode(), "value")
        self.calibrator = widgets.Dropdown(options=["entropy", "minmax", "percentile"], value="entropy",
                                           description="calibrator", style=_WIDE)
        self.calibration = widgets.Dropdown(options=[CALIBRATION_NONE], value=CALIBRATION_NONE,
                                            description="calibration data", style=_WIDE,
                                            layout=widgets.Layout(width="460px"))
        self.sparsity = widgets.Dropdown(options=list(SPARSITY_MODES), value="disable", description="2:4 sparsity",
                                         style=_WIDE)
        self.sparsity_help = widgets.HTML("<small>enable: use weights that already are 2:4 &middot; "
                                          "force: prune to 2:4 first (changes the weights)</small>")
        self.backend = widgets.Dropdown(options=backend_choices(), value="cpu", description="backend", style=_WIDE)
        self.backend_note = widgets.HTML(notice_box("no GPU: CPU backend") if not cuda_available() else "")
        self.level = widgets.IntSlider(value=2, min=0, max=3, description="builder level", style=_WIDE,
                                       continuous_update=False)
        self.level_help = widgets.HTML("<small>0 first valid tactic, no timing &middot; 1 brief timing &middot; "
                                       "2 median of 10 &middot; 3 exhaustive</small>")
        self.timing_cache = widgets.Text(value="", placeholder="optional: timing cache .json path",
                                         description="timing cache", style=_WIDE, layout=widgets.Layout(width="460px"))
        self.tactic_sources = widgets.Text(value="", placeholder="all", description="tactic sources",
                                           style=_WIDE, layout=widgets.Layout(width="460px"))
        self.input_shapes = widgets.Text(value="", placeholder="optional: name=1x128, other=1x128",
                                         description="input shapes", style=_WIDE, layout=widgets.Layout(width="460px"))
        self.errors = {group: widgets.HTML("") for group in GROUPS}
        self.backend.observe(lambda _: self.set_tactic_hint(), "value")
        self.set_tactic_hint()
        self._show_batch_mode()
        self._show_mixed()

    def rows(self) -> list[widgets.Widget]:
        e = self.errors
        return [widgets.HBox([_label("precision"), self.precision]), self.mixed_box, e["precision"],
                widgets.HBox([_label("batch"), self.batch_mode, self.batch, self.profile_box]), e["batch"],
                widgets.HBox([self.calibrator, self.calibration]), e["calibration"],
                widgets.HBox([self.sparsity, self.sparsity_help]),
                widgets.HBox([self.backend, self.backend_note]), e["backend"],
                widgets.HBox([self.level, self.level_help]), e["level"],
                widgets.VBox([self.timing_cache, self.tactic_sources, self.input_shapes]), e["advanced"]]

    def _show_batch_mode(self) -> None:
        fixed = self.batch_mode.value == "fixed batch"
        self.batch.layout.display = None if fixed else "none"
        self.profile_box.layout.display = "none" if fixed else None

    def _show_mixed(self) -> None:
        self.mixed_box.layout.display = None if self.precision.value == "mixed" else "none"

    def set_calibration_choices(self, names: list[str]) -> None:
        self.calibration.options = [CALIBRATION_NONE] + list(names)
        self.calibration.value = names[0] if names else CALIBRATION_NONE

    def set_tactic_hint(self) -> None:
        """Name the tactic sources the chosen backend has here, as the placeholder ("all (numpy, blas)")."""
        from workbench import backends
        lister = getattr(backends, "tactic_sources", None)
        try:
            names = list(lister(self.backend.value)) if lister is not None else []
        except Exception:                  # a backend that cannot list its sources still builds
            names = []
        self.tactic_sources.placeholder = f"all ({', '.join(names)})" if names else "all"

    # -- errors ------------------------------------------------------------------------------
    def clear_errors(self) -> None:
        for widget in self.errors.values():
            widget.value = ""

    def show_error(self, group: str, message: str) -> None:
        self.errors[group if group in self.errors else "general"].value = error_box(message)

    # -- settings <-> widgets ----------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """What the widgets say, as `Workbench.build` keyword arguments."""
        sources = [s.strip() for s in self.tactic_sources.value.split(",") if s.strip()]
        out = {"precision": self.precision.value, "backend": self.backend.value, "builder_level": self.level.value,
               "allowed": [p for p, box in self.mixed.items() if box.value], "strict": self.strict.value,
               "calibrator": self.calibrator.value, "calibration": self.calibration.value,
               "sparsity": self.sparsity.value, "timing_cache": self.timing_cache.value.strip() or None,
               "tactic_sources": sources or None, "input_shapes": self.input_shapes.value}
        if self.batch_mode.value == "fixed batch":
            out["batch_size"] = self.batch.value
        else:
            out["profile"] = (self.profile_min.value, self.profile_opt.value, self.profile_max.value)
        return out

    def defaults(self) -> dict[str, Any]:
        """The settings of a fresh Build tab (the calibration default is the model's first data set)."""
        calibration = next((c for c in self.calibration.options if c != CALIBRATION_NONE), CALIBRATION_NONE)
        return {"precision": "fp32", "backend": "cpu", "builder_level": 2, "calibrator": "entropy",
                "calibration": calibration, "sparsity": "disable", "allowed": ["fp16", "int8"], "strict": False,
                "timing_cache": None, "tactic_sources": None, "input_shapes": None, "batch_size": 8}

    def show(self, settings: dict[str, Any]) -> None:
        """Move the widgets to `settings` (values a widget cannot show are left to the error lines)."""
        if settings.get("precision") in self.precision.options:
            self.precision.value = settings["precision"]
        if settings.get("batch_size") is not None:
            self.batch_mode.value = "fixed batch"
            batch = settings["batch_size"]
            if isinstance(batch, int) and batch >= 1:
                self.batch.max = max(self.batch.max, batch)
                self.batch.value = batch
        elif settings.get("profile") is not None:
            self.batch_mode.value = "profile"
            try:
                low, opt, high = (int(v) for v in settings["profile"])
                self.profile_min.value, self.profile_opt.value, self.profile_max.value = low, opt, high
            except (TypeError, ValueError):
                pass                           # the build names the bad profile next to the batch row
        if settings.get("backend") in self.backend.options:
            self.backend.value = settings["backend"]
        if settings.get("builder_level") in (0, 1, 2, 3):
            self.level.value = settings["builder_level"]
        if settings.get("calibrator") in self.calibrator.options:
            self.calibrator.value = settings["calibrator"]
        if isinstance(settings.get("calibration"), str) and settings["calibration"] in self.calibration.options:
            self.calibration.value = settings["calibration"]
        self.sparsity.value = sparsity_mode(settings.get("sparsity"))
        if settings.get("allowed") is not None:
            for name, box in self.mixed.items():
                box.value = name in settings["allowed"]
        self.strict.value = bool(settings.get("strict"))
        self.timing_cache.value = str(settings.get("timing_cache") or "")
        self.tactic_sources.value = ", ".join(settings.get("tactic_sources") or ())
        shapes = settings.get("input_shapes")
        if isinstance(shapes, dict):
            shapes = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in shapes.items())
        self.input_shapes.value = shapes or ""


def sparsity_mode(value) -> str:
    """The builder's sparsity mode for a setting: a mode name, or a bool (True = "force")."""
    if isinstance(value, str):
        return value
    return "force" if value else "disable"


def config_precision(settings: dict[str, Any]):
    """BuilderConfig.precision for the settings: a name, or for "mixed" the allowed set (plus fp32)."""
    if settings.get("precision") != "mixed":
        return settings.get("precision", "fp32")
    return frozenset({"fp32", *(settings.get("allowed") or ())})


def supported_precision(settings: dict[str, Any]) -> str | None:
    """None if the builder can take the settings' precision, else why not."""
    precision = settings.get("precision", "fp32")
    if precision == "mixed":
        if not settings.get("allowed"):
            return "mixed precision: tick at least one precision to allow besides fp32"
        unknown = [p for p in settings["allowed"] if p not in PRECISIONS]
        return f"mixed precision: {unknown} are not precisions of this builder ({', '.join(PRECISIONS)})" \
            if unknown else None
    if precision in PRECISIONS:
        return None
    return f"precision {precision!r} is not available; choose one of {', '.join(PRECISION_CHOICES)}"
