"""Layers tab: a build's engine as a table, one row per layer (op, fused originals, precision,
tactic, time, share of the total), sortable and filterable. Choosing a layer highlights its source
nodes in the Graph tab and shows what the autotuner decided for it.

The table is `<table class="wb-layers">` with one `<tbody>` row per shown layer (the browser test
counts them); `LayersTab.dataframe()` is the same rows as a DataFrame.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets
import pandas as pd

from workbench.viz.app.common import esc, notice_box, table_html
from workbench.viz.app.history import BuildRecord

if TYPE_CHECKING:
    from workbench.viz.app.main import Workbench

__all__ = ["LayersTab", "SORT_COLUMNS"]

SORT_COLUMNS = {"execution order": None, "layer": "layer", "op": "op", "precision": "precision",
                "tactic": "tactic.name", "time": "time_ms", "share": "share.percent"}
HEADERS = {"layer": "layer", "op": "op", "source_nodes": "fused originals", "precision": "precision",
           "tactic.name": "tactic", "time_ms": "time (ms)", "share.percent": "share (%)"}
FORMATS = {"time_ms": ".4f", "share.percent": ".1f"}


class LayersTab:
    def __init__(self, app: "Workbench"):
        self.app = app
        self.build = widgets.Dropdown(description="build", options=[], layout=widgets.Layout(width="300px"))
        self.sort = widgets.Dropdown(description="sort by", options=list(SORT_COLUMNS), value="execution order",
                                     layout=widgets.Layout(width="240px"))
        self.ascending = widgets.Checkbox(value=True, description="ascending", indent=False)
        self.filter = widgets.Text(value="", placeholder="filter: name, op or original node",
                                   description="filter", layout=widgets.Layout(width="320px"))
        self.layer = widgets.Select(description="layer", options=[], rows=8, layout=widgets.Layout(width="420px"))
        self.table = widgets.HTML("")
        self.details = widgets.HTML("")
        self.note = widgets.HTML("")
        self._quiet = False                 # True while the tab itself sets options (no event storm)
        for control in (self.build, self.sort, self.ascending, self.filter):
            control.observe(lambda _: None if self._quiet else self.render(), "value")
        self.layer.observe(lambda _: None if self._quiet else self._on_select(), "value")
        self.widget = widgets.VBox([widgets.HBox([self.build, self.sort, self.ascending, self.filter]), self.note,
                                    widgets.HBox([self.layer, self.details]), self.table])

    @property
    def record(self) -> BuildRecord | None:
        history = self.app.history
        if not len(history) or not self.build.value:
            return history.latest
        return history[self.build.value]

    def dataframe(self) -> pd.DataFrame:
        """The rows the table shows: filtered, then sorted."""
        record = self.record
        if record is None:
            return pd.DataFrame(columns=list(HEADERS))
        df = record.layers()
        text = self.filter.value.strip().lower()
        if text:
            haystack = df["layer"] + " " + df["op"] + " " + df["source_nodes"].map(" ".join)
            df = df[haystack.str.lower().str.contains(text, regex=False)]
        column = SORT_COLUMNS[self.sort.value]
        if column is not None:
            df = df.sort_values(column, ascending=self.ascending.value, kind="stable", na_position="last")
        elif not self.ascending.value:
            df = df.iloc[::-1]
        return df

    def refresh(self) -> None:
        """After a build: list every build and show the newest."""
        labels = [r.label for r in self.app.history]
        self._quiet = True
        try:
            self.build.options = labels
            self.build.value = labels[-1] if labels else None
        finally:
            self._quiet = False
        self.render()

    def render(self) -> None:
        record = self.record
        if record is None:
            self.note.value = notice_box("no build yet: build one in the Build tab")
            self.table.value, self.layer.options = "", []
            return
        df = self.dataframe()
        notes = [] if df["time_ms"].notna().any() else ["no per-layer times: " + "; ".join(
            n for n in record.notes if "profile" in n) or "the profile was not measured"]
        notes.append(f"{len(df)} of {len(record.engine.layers)} layers shown ({record.label}, "
                     f"{record.engine.network.backend})")
        self.note.value = "".join(notice_box(n) for n in notes)
        selected = self.layer.value
        names = list(df["layer"])
        self._quiet = True
        try:
            self.layer.options = names
            self.layer.value = selected if selected in names else None
        finally:
            self._quiet = False
        if selected and selected not in names:         # the chosen layer was filtered out: un-highlight it
            self.details.value = ""
            self.app.graph_tab.highlight(())
        self.table.value = table_html(df, "wb-layers", selected=self.layer.value, key="layer", formats=FORMATS,
                                      headers=HEADERS, columns=list(HEADERS))

    def select(self, layer: str) -> None:
        """Choose a layer (as a click on the list does)."""
        self.layer.value = layer

    def _on_select(self) -> None:
        record, name = self.record, self.layer.value
        if record is None or not name:
            self.details.value = ""
            self.app.graph_tab.highlight(())
            return
        layer = next(l for l in record.engine.layers if l.name == name)
        self.app.graph_tab.highlight([layer.name, *layer.source_nodes])
        lines = [f"<b>{esc(layer.name)}</b> ({esc(layer.qualified_op)}), {esc(layer.precision)}, "
                 f"tactic <code>{esc(layer.tactic)}</code>",
                 f"from {len(layer.source_nodes)} original node(s): {esc(', '.join(layer.source_nodes))} "
                 "(highlighted in the Graph tab)",
                 f"output shapes: {esc(', '.join(str(s) for s in layer.output_shapes))}"]
        log_df = record.build_log
        if log_df is not None and len(log_df) and "layer" in log_df:
            row = log_df[log_df["layer"] == name]
            if len(row):
                row = row.iloc[0]
                times = row.get("times_ms") or {}
                lines.append("autotuner: " + esc(", ".join(f"{k} {v:.3g} ms" for k, v in times.items()) or "not timed")
                             + f" &rarr; <b>{esc(str(row.get('choice')))}</b> ({esc(str(row.get('reason', '')))}"
                             + (", cached" if row.get("cached") else "") + ")")
        self.details.value = "<br>".join(lines)
        self.table.value = table_html(self.dataframe(), "wb-layers", selected=name, key="layer", formats=FORMATS,
                                      headers=HEADERS, columns=list(HEADERS))
