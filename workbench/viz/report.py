"""`wb.report`: one standalone HTML file about an engine or a history of builds.

Why a single file: it is what one mails to a colleague or attaches to an issue. Everything is inside
it: the graph as inline SVG, the tables as HTML, the plots as base64 PNG. It loads nothing from a
server or the network, so it opens the same offline, years later.

Example:
    >>> wb.report(engine, "report.html")
    >>> wb.report(app.history, "builds.html", feeds={"input": x[:8]})     # one section per build
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.runtime import Engine
from workbench.viz.engine_graph import engine_graph
from workbench.viz.engine_plots import plot_builds, plot_layer_times, plot_op_mix
from workbench.viz.html import CSS, esc, facts, figure_img, table
from workbench.viz.reprs import MAX_SVG_NODES, engine_facts, engine_table

__all__ = ["report"]
log = logging.getLogger(__name__)

PROFILE_ITERS = 5


@dataclasses.dataclass
class _Build:
    label: str
    engine: Engine
    graph: Any = None                  # the model graph, drawn beside the engine when known
    profile: pd.DataFrame | None = None
    note: str = ""


def report(source: Any, path: str | os.PathLike = "report.html", *, graph: Any = None,
           feeds: Mapping[str, Any] | None = None, profiles: Any = None, title: str | None = None) -> Path:
    """Write a standalone HTML report and return its path.

    Args:
        source: an `Engine`, a list of Engines, or a build history: any iterable of records with
            `.engine` and `.config` attributes (and optionally `.label`, `.graph`), e.g. the app's history.
        path: the .html file to write.
        graph: the model `Graph` the engine was built from; drawn before/after beside the engine's layers.
            Without it the engine's own layer graph is drawn.
        feeds: input name -> array; each engine is profiled on them (`ctx.profile`) for per-layer times.
        profiles: per-layer profiles already measured: one DataFrame (one engine), a list in build order,
            or a dict label -> DataFrame.
        title: the page title (default: the model name).

    Example:
        >>> wb.report(engine, "report.html", profiles=engine.create_context().profile({"input": x}))
    """
    builds = _builds(source, graph)
    _attach_profiles(builds, profiles, feeds)
    title = title or f"Inference Workbench report: {builds[0].engine.meta.get('model', 'engine')}"
    sections = [_overview(builds)] if len(builds) > 1 else []
    sections += [_section(build) for build in builds]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    from workbench import __version__
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
                f"<style>{CSS} body {{ margin: 1.5em; }} .wb-report .wb-svg {{ max-height: none; }}</style></head>\n"
                f'<body class="wb-html wb-report"><h1>{esc(title)}</h1>'
                f'<div class="wb-facts">written {stamp} by workbench {__version__}; '
                f"{len(builds)} build{'s' if len(builds) > 1 else ''}</div>\n"
                + "\n".join(sections) + "\n</body></html>\n")
    path = Path(path)
    path.write_text(document, encoding="utf-8")
    log.info("report: %d builds, %d KiB -> %s", len(builds), len(document) // 1024, path)
    return path


def _builds(source: Any, graph: Any) -> list[_Build]:
    if isinstance(source, Engine):
        return [_Build("engine", source, graph)]
    if isinstance(source, (str, bytes, Mapping)) or not hasattr(source, "__iter__"):
        raise WorkbenchError(f"report: expected an Engine, a list of Engines or a build history (records with "
                             f".engine and .config), got {type(source).__name__}")
    builds = []
    for index, item in enumerate(source, 1):
        if isinstance(item, Engine):
            builds.append(_Build(f"build {index}: {_describe(item)}", item, graph))
        elif isinstance(getattr(item, "engine", None), Engine):
            label = getattr(item, "label", None) or f"build {index}: {_describe(item.engine)}"
            builds.append(_Build(str(label), item.engine, getattr(item, "graph", None) or graph))
        else:
            raise WorkbenchError(f"report: item {index} of the history is a {type(item).__name__} without an "
                                 f".engine; expected Engines or records with .engine and .config")
    if not builds:
        raise WorkbenchError("report: the history is empty; build an engine first")
    return builds


def _describe(engine: Engine) -> str:
    profile = engine.profile
    batch = "" if profile is None else (f" batch {profile.opt}" if profile.min == profile.max
                                        else f" batch {profile.min}..{profile.max}")
    return f"{engine.precision}{batch} on {engine.network.backend}"


def _attach_profiles(builds: list[_Build], profiles: Any, feeds: Mapping[str, Any] | None) -> None:
    if isinstance(profiles, pd.DataFrame):
        if len(builds) != 1:
            raise WorkbenchError(f"report: one profile DataFrame given for {len(builds)} builds; "
                                 "pass a list (build order) or a dict label -> DataFrame")
        profiles = [profiles]
    if isinstance(profiles, Mapping):
        unknown = set(profiles) - {b.label for b in builds}
        if unknown:
            raise WorkbenchError(f"report: profiles for unknown builds {sorted(unknown)}; "
                                 f"builds are {[b.label for b in builds]}")
        profiles = [profiles.get(b.label) for b in builds]
    if profiles is not None:
        if len(profiles) != len(builds):
            raise WorkbenchError(f"report: {len(profiles)} profiles for {len(builds)} builds")
        for build, df in zip(builds, profiles):
            build.profile = df
    if feeds is None:
        return
    for build in builds:
        if build.profile is None:
            try:
                build.profile = build.engine.create_context().profile(dict(feeds), iters=PROFILE_ITERS)
            except WorkbenchError as exc:     # e.g. a batch outside this build's profile: say so, keep going
                build.note = f"not profiled: {exc}"


def _overview(builds: list[_Build]) -> str:
    rows = []
    for build in builds:
        facts_ = engine_facts(build.engine)
        tuned = engine_table(build.engine).get("tuned_ms")
        rows.append({"build": build.label, "precision": build.engine.precision, "backend": facts_["backend"],
                     "batch": facts_["batch"], "layers": facts_["layers"], "build_s": facts_["build"],
                     "time_ms": float(build.profile["time_ms"].sum()) if build.profile is not None
                     else (float(tuned.sum()) if tuned is not None else None)})
    df = pd.DataFrame(rows)
    body = "<h2>Builds compared</h2>" + table(df, "wb-builds")
    if df["time_ms"].notna().any():
        body += figure_img(plot_builds(df.dropna(subset=["time_ms"]), title="summed layer time per build"),
                           "summed layer time per build")
    return f'<section class="wb-overview">{body}</section>'


def _section(build: _Build) -> str:
    engine = build.engine
    layers = engine_table(engine)
    parts = [f"<h2>{esc(build.label)}</h2>", facts(engine_facts(engine))]
    if build.note:
        parts.append(f'<p class="wb-facts">{esc(build.note)}</p>')
    parts += ["<h3>graph</h3>", _graph_svg(build), "<h3>layers</h3>",
              table(layers, "wb-engine-layers", bars="tuned_ms" if "tuned_ms" in layers else None)]
    build_log = getattr(engine, "build_log", None)
    if isinstance(build_log, pd.DataFrame) and len(build_log):
        parts += ["<h3>build log</h3>", table(build_log, "wb-build-log")]
    if build.profile is not None:
        parts += ["<h3>profile</h3>", table(build.profile, "wb-layer-profile", bars="time_ms")]
    parts.append("<h3>plots</h3>")
    if build.profile is not None:
        parts.append(figure_img(plot_layer_times(build.profile, title="measured time per layer"), "time per layer"))
    elif "tuned_ms" in layers and layers["tuned_ms"].notna().any():
        parts.append(figure_img(plot_layer_times(layers, "tuned_ms", title="autotuned time per layer"),
                                "autotuned time per layer"))
    parts.append(figure_img(plot_op_mix(layers), "layers per op and precision"))
    return f'<section class="wb-build">{"".join(parts)}</section>'


def _graph_svg(build: _Build) -> str:
    from workbench.viz.svg import render_svg
    if len(build.engine.layers) > MAX_SVG_NODES:
        return f'<p class="wb-facts">{len(build.engine.layers)} layers: too many to draw in the report</p>'
    try:
        drawn = engine_graph(build.engine)
        view = render_svg(build.graph, drawn) if build.graph is not None else render_svg(drawn)
    except Exception as exc:            # noqa: BLE001  (the report is still worth writing without its picture)
        log.warning("report: graph not drawn: %s", exc)
        return f'<p class="wb-facts">graph not drawn: {esc(type(exc).__name__)}: {esc(exc)}</p>'
    return f'<div class="wb-svg">{view.svg}</div>'
