"""Small HTML pieces shared by the notebook displays (`reprs`) and the standalone report (`report`).

Why one place: a table, a figure or a facts line should look the same in a notebook cell and in the
report file; and every piece is self-contained (inline CSS, PNG as base64), so a saved notebook or
report shows it without a server or network.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any, Iterable

import pandas as pd

__all__ = ["CSS", "esc", "table", "facts", "figure_png", "figure_img"]

# Scoped to .wb-html so it never restyles the rest of a notebook.
CSS = """
.wb-html { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 13px; }
.wb-html h2, .wb-html h3 { margin: 0.8em 0 0.3em 0; }
.wb-html .wb-facts { color: #444; margin: 0.2em 0 0.5em 0; }
.wb-html table { border-collapse: collapse; margin: 0.3em 0 0.8em 0; }
.wb-html th, .wb-html td { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
.wb-html th { background: #f3f4f6; }
.wb-html td.wb-num { text-align: right; font-variant-numeric: tabular-nums; }
.wb-html tr.wb-hot td { background: #fde8e8; }
.wb-html .wb-bar { display: inline-block; height: 9px; background: #e8743b; margin-right: 4px; }
.wb-html .wb-svg { overflow: auto; max-height: 720px; border: 1px solid #eee; }
.wb-html img { max-width: 100%; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> tuple[str, bool]:
    """Text of one table cell and whether it is numeric (right-aligned)."""
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, float):
        return (f"{value:.4g}" if value == value else ""), True
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, (dict, list, tuple)):
        return _nested(value), False
    return ("" if value is None else str(value)), False


def _nested(value: Any) -> str:
    """Text of a list or dict cell; a list of ints is a shape, written 8\u00d71\u00d78\u00d78."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_nested(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "\u00d7".join(map(str, value))
        return ", ".join(_nested(v) for v in value)
    return "?" if value is None else _cell(value)[0]


def table(df: pd.DataFrame, cls: str = "", *, bars: str | None = None, hot: Iterable[bool] | None = None,
          limit: int | None = None) -> str:
    """A plain HTML table, one <tr> per row of `df`, header in <thead>.

    Args:
        cls: CSS class of the <table> (tests and the browser select rows by it).
        bars: a numeric column drawn as an inline bar in front of its number (share of the column max).
        hot: per-row flags; flagged rows get class "wb-hot" (e.g. the first layer whose error jumps).
        limit: show at most this many rows, with a note saying how many were left out.
    """
    shown = df if limit is None or len(df) <= limit else df.head(limit)
    peak = float(pd.to_numeric(df[bars], errors="coerce").max()) if bars and len(df) else 0.0
    flags = list(hot) if hot is not None else [False] * len(df)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for index, record in enumerate(shown.itertuples(index=False, name=None)):
        cells = []
        for column, value in zip(shown.columns, record):
            text, numeric = _cell(value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value)
            if column == bars and numeric and text and peak > 0:       # text is "" for NaN: no bar
                width = max(1, round(60 * float(value) / peak))
                text = f'<span class="wb-bar" style="width:{width}px"></span>{esc(text)}'
            else:
                text = esc(text)
            cells.append(f'<td class="wb-num">{text}</td>' if numeric else f"<td>{text}</td>")
        row_cls = ' class="wb-hot"' if index < len(flags) and flags[index] else ""
        rows.append(f"<tr{row_cls}>{''.join(cells)}</tr>")
    more = (f'<p class="wb-facts">{len(df) - len(shown)} more rows not shown</p>' if len(shown) < len(df) else "")
    cls_attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{cls_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def facts(items: dict[str, Any]) -> str:
    """One line of "key: value" pairs, values of None left out."""
    parts = [f"<b>{esc(k)}</b> {esc(v)}" for k, v in items.items() if v is not None and v != ""]
    return f'<div class="wb-facts">{" &middot; ".join(parts)}</div>'


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (no pyplot, nothing shown)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def figure_img(fig, alt: str) -> str:
    """A matplotlib Figure as an <img> with the PNG inline (data: URI), so the page needs no files."""
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img class="wb-plot" alt="{esc(alt)}" src="data:image/png;base64,{data}"/>'
