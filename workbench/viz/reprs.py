"""Rich notebook displays for the workbench's objects, registered as IPython formatters.

Why formatters and not `_repr_html_` methods: the classes live in rooms before viz on the road
(ir, passes, builder, runtime), which must not import viz. So viz registers HTML for them with
IPython (`formatters["text/html"].for_type`), from `%load_ext workbench` and, automatically, from
`import workbench` inside IPython. Terminals keep the classes' own concise `__repr__`.

What each shows:
    Graph         facts + the static SVG (`render_svg`; op counts instead for very large graphs)
    FusionReport  node counts, rewrites per pass, one row per rewrite
    Engine        facts + <table class="wb-engine-layers">, one row per layer
    Profile       min / opt / max batch
    DataFrames    only those of `compare`, `compare_layers` and `ExecutionContext.profile` (recognised
                  by their columns) get coloured rows or time bars; every other DataFrame is pandas' own.
"""
from __future__ import annotations

import logging
import sys

import pandas as pd

from workbench.viz.html import CSS, esc, facts, table

__all__ = ["graph_html", "fusion_report_html", "engine_html", "profile_html", "dataframe_html",
           "chosen_times", "install", "install_if_ipython", "MAX_SVG_NODES"]
log = logging.getLogger(__name__)

MAX_SVG_NODES = 400          # past this the inline SVG gets slow to lay out and heavy to keep in a notebook
COMPARE_COLUMNS = ["output", "max_abs", "rel_l2", "cosine", "sqnr_db", "top1_agreement"]
COMPARE_LAYERS_COLUMNS = ["layer", "op", "tensor", "precision", "rel_l2", "max_abs", "cosine", "first_jump"]
PROFILE_COLUMNS = {"layer", "op", "tactic", "precision", "time_ms", "percent"}


def _wrap(title: str, body: str, cls: str) -> str:
    return f'<div class="wb-html {cls}"><style>{CSS}</style><h3>{esc(title)}</h3>{body}</div>'


def graph_html(graph) -> str:
    from workbench.viz.svg import render_svg
    counts = graph.op_counts()
    head = facts({"nodes": len(graph.model.graph), "inputs": ", ".join(map(str, graph.inputs)),
                  "outputs": ", ".join(map(str, graph.outputs)), "source": graph.source})
    if sum(counts.values()) <= MAX_SVG_NODES:
        try:
            return _wrap(f"Graph {graph.name}", head + f'<div class="wb-svg">{render_svg(graph).svg}</div>', "wb-graph")
        except Exception as exc:        # noqa: BLE001  (a display must never raise; say why instead)
            head += f'<p class="wb-facts">no picture: {esc(type(exc).__name__)}: {esc(exc)}</p>'
    else:
        head += (f'<p class="wb-facts">{sum(counts.values())} nodes: too many to draw inline; '
                 f'draw a part with wb.render_svg(graph, focus="name.*")</p>')
    ops = pd.DataFrame(sorted(counts.items(), key=lambda kv: -kv[1]), columns=["op", "count"])
    return _wrap(f"Graph {graph.name}", head + table(ops, "wb-op-counts"), "wb-graph")


def fusion_report_html(report) -> str:
    head = facts({"level": report.level, "nodes": f"{report.nodes_before} \u2192 {report.nodes_after}",
                  "rewrites": len(report.rewrites), "missed": len(report.misses)})
    summary = report.summary()
    body = head + table(summary[summary["rewrites"] > 0], "wb-passes")
    rewrites = report.to_dataframe()
    if len(rewrites):
        body += "<h3>rewrites</h3>" + table(rewrites[["pass", "new_node", "new_op", "replaced_nodes", "detail"]],
                                            "wb-rewrites", limit=200)
    return _wrap("FusionReport", body, "wb-fusion-report")


def chosen_times(engine) -> pd.Series | None:
    """Each layer's time with its chosen tactic, from the build log (None when the engine has none)."""
    log_df = getattr(engine, "build_log", None)
    if not isinstance(log_df, pd.DataFrame) or not {"layer", "times_ms", "choice"} <= set(log_df.columns):
        return None
    times = [(t or {}).get(c) if isinstance(t, dict) else None for t, c in zip(log_df["times_ms"], log_df["choice"])]
    return pd.Series(pd.to_numeric(pd.Series(times, dtype=object), errors="coerce").to_numpy(),
                     index=log_df["layer"].to_numpy(), name="tuned_ms")


def engine_facts(engine) -> dict:
    meta = engine.meta
    cache = meta.get("timing_cache") or {}
    memory = getattr(engine, "memory", None)
    profile = engine.profile
    return {"model": meta.get("model"), "backend": engine.network.backend, "precision": engine.precision,
            "batch": None if profile is None else (str(profile.opt) if profile.min == profile.max
                                                   else f"{profile.min}..{profile.max} (opt {profile.opt})"),
            "layers": len(engine.layers), "weights": f"{engine.weight_bytes / 1e6:.2f} MB",
            "activations": f"{memory['arena_bytes'] / 1e6:.2f} MB" if isinstance(memory, dict) and
            "arena_bytes" in memory else None,
            "build": f"{meta['build_seconds']:.2f} s" if "build_seconds" in meta else None,
            "timing cache": f"{cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses" if cache else None}


def engine_table(engine) -> pd.DataFrame:
    """The layers table of displays and reports: to_dataframe plus the tuned time when known."""
    df = engine.to_dataframe().rename(columns={"tactic.name": "tactic", "source_nodes": "fused from"})
    df["output_shapes"] = ["; ".join("?" if s is None else "\u00d7".join("?" if d is None else str(d) for d in s)
                                     for s in shapes) for shapes in df["output_shapes"]]
    times = chosen_times(engine)
    if times is not None:
        df["tuned_ms"] = df["layer"].map(times).to_numpy()
    return df


def engine_html(engine) -> str:
    df = engine_table(engine)
    body = facts(engine_facts(engine)) + table(df, "wb-engine-layers", bars="tuned_ms" if "tuned_ms" in df else None,
                                               limit=500)
    return _wrap(f"Engine {engine.meta.get('model', '')}", body, "wb-engine")


def profile_html(profile) -> str:
    rows = pd.DataFrame({"min": [profile.min], "opt": [profile.opt], "max": [profile.max]})
    return _wrap("Profile (batch)", table(rows, "wb-profile"), "wb-batch-profile")


def dataframe_html(df: pd.DataFrame) -> str | None:
    """The compare / compare_layers / layer-profile frames, drawn with their meaning; others as pandas does."""
    columns = list(df.columns)
    if columns[:len(COMPARE_COLUMNS)] == COMPARE_COLUMNS:
        worst = df["rel_l2"].astype(float) > 1e-2
        return _wrap("compare", table(df, "wb-compare", hot=worst), "wb-compare-result")
    if columns == COMPARE_LAYERS_COLUMNS:
        jumps = df.index[df["first_jump"].astype(bool)]
        head = facts({"tensors": len(df), "first jump": df.loc[jumps[0], "layer"] if len(jumps) else "none"})
        return _wrap("compare_layers", head + table(df, "wb-compare-layers", hot=df["first_jump"].astype(bool)),
                     "wb-compare-result")
    if PROFILE_COLUMNS <= set(columns):
        head = facts({"layers": len(df), "total": f"{float(df['time_ms'].sum()):.4f} ms"})
        return _wrap("layer profile", head + table(df, "wb-layer-profile", bars="time_ms"), "wb-profile")
    return df._repr_html_()


def _registrations():
    from workbench.builder.config import Profile
    from workbench.ir import Graph
    from workbench.passes import FusionReport
    from workbench.runtime import Engine
    return [(Graph, graph_html), (FusionReport, fusion_report_html), (Engine, engine_html),
            (Profile, profile_html), (pd.DataFrame, dataframe_html)]


def install(ip=None) -> bool:
    """Register the HTML displays with IPython shell `ip` (default: the running one). False outside IPython."""
    if ip is None:
        ip = _running_ipython()
    if ip is None:
        return False
    html_formatter = ip.display_formatter.formatters["text/html"]
    for cls, function in _registrations():
        html_formatter.for_type(cls, function)
    return True


def install_if_ipython() -> None:
    """Called by `import workbench`: installs the displays when imported inside IPython; never
    imports IPython itself (a plain `python` run pays nothing) and never raises."""
    try:
        install()
    except Exception as exc:            # noqa: BLE001  (displays are a nicety; importing must not fail)
        log.debug("rich displays not installed: %s", exc)


def _running_ipython():
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None
