"""Small pieces every tab shares: figures into Output widgets, error and notice boxes, DataFrames as
HTML tables, the app's style sheet, and the device line ("no GPU: CPU backend").

Figures are rendered to PNG here and put into an Output widget's `outputs` directly, not through
`with output: display(fig)`: that works from a background thread (builds and sweeps run in one),
in a plain Python process with no kernel (the tests), and in an exported notebook alike.
"""
from __future__ import annotations

import base64
import html
import io
import warnings
from typing import Sequence

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["show_figure", "show_html", "clear", "error_box", "notice_box", "table_html", "device_note",
           "cuda_available", "STYLE", "esc"]

esc = html.escape

STYLE = """<style>
.wb-app { font-family: Helvetica, Arial, sans-serif; }
.wb-app .wb-error { color: #8a1c1c; background: #fdecec; border-left: 4px solid #c62828; padding: 4px 8px;
  margin: 2px 0; white-space: pre-wrap; font-size: 12px; }
.wb-app .wb-notice { color: #4a4a4a; background: #f3f6fa; border-left: 4px solid #6b8bb8; padding: 4px 8px;
  margin: 2px 0; font-size: 12px; }
.wb-app table.wb-layers, .wb-app table.wb-table { border-collapse: collapse; font-size: 12px; }
.wb-app table.wb-layers th, .wb-app table.wb-table th { background: #eef1f5; text-align: left; padding: 3px 8px;
  border-bottom: 1px solid #c8ced6; }
.wb-app table.wb-layers td, .wb-app table.wb-table td { padding: 2px 8px; border-bottom: 1px solid #eceff3; }
.wb-app table.wb-layers tr.wb-selected td { background: #fff3c4; }
.wb-app pre.wb-log { max-height: 180px; overflow: auto; font-size: 11px; background: #fafafa; margin: 0;
  padding: 4px; border: 1px solid #e0e0e0; }
.wb-app .wb-svg { overflow: auto; max-height: 640px; border: 1px solid #e0e0e0; }
</style>"""


def cuda_available() -> bool:
    """Whether the CUDA backend can run here; False when the function itself does not exist yet."""
    from workbench import backends
    check = getattr(backends, "cuda_available", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:                      # a broken driver is "no GPU", not a crash of the app
        return False


def device_note() -> str:
    if cuda_available():
        return "GPU available: cpu and cuda backends"
    return "no GPU: CPU backend (numerically faithful, CPU timings)"


def choose_latest(owner, dropdown: widgets.Dropdown, labels: list[str]) -> None:
    """Offer `labels` and select the newest, with `owner._quiet` set so the tab's own observer
    does not redraw once per assignment."""
    owner._quiet = True
    try:
        dropdown.options = labels
        dropdown.value = labels[-1]
    finally:
        owner._quiet = False


def show_figure(output: widgets.Output, figure: Figure | None, alt: str = "figure") -> None:
    """Replace what `output` shows with `figure` as a PNG (None clears it)."""
    if figure is None:
        output.outputs = ()
        return
    buffer = io.BytesIO()
    with warnings.catch_warnings():       # layout warnings of crowded plots are not the user's business here
        warnings.simplefilter("ignore", UserWarning)
        figure.savefig(buffer, format="png", dpi=80)     # figures lay themselves out; "tight" would draw twice
    data = {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": f"<{alt}>"}
    output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)


def show_html(output: widgets.Output, text: str, plain: str = "") -> None:
    output.outputs = ({"output_type": "display_data", "data": {"text/html": text, "text/plain": plain or text},
                       "metadata": {}},)


def clear(*outputs: widgets.Output) -> None:
    for output in outputs:
        output.outputs = ()


def error_box(message: str) -> str:
    """HTML of an error shown next to the control that caused it."""
    return f'<div class="wb-error">{esc(message)}</div>' if message else ""


def notice_box(message: str) -> str:
    """HTML of a plain note: what is not available here, and why."""
    return f'<div class="wb-notice">{esc(message)}</div>' if message else ""


def table_html(df: pd.DataFrame, css_class: str = "wb-table", selected: str | None = None,
               key: str | None = None, formats: dict[str, str] | None = None,
               headers: dict[str, str] | None = None, columns: Sequence[str] | None = None) -> str:
    """A DataFrame as `<table class=...><thead>...<tbody>` with one `<tr>` per row (the browser test
    counts them). `selected` marks the row whose `key` column equals it."""
    columns = list(columns or df.columns)
    formats, headers = formats or {}, headers or {}
    head = "".join(f"<th>{esc(headers.get(c, c))}</th>" for c in columns)
    rows = []
    for record in df[columns].to_dict("records"):
        cells = "".join(f"<td>{esc(_format(record[c], formats.get(c)))}</td>" for c in columns)
        mark = ' class="wb-selected"' if selected is not None and key and record.get(key) == selected else ""
        rows.append(f"<tr{mark}>{cells}</tr>")
    return (f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _format(value, spec: str | None) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
