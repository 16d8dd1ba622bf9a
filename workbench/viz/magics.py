"""IPython magics: the workbench's CLI verbs inside a notebook, binding their results to variables.

    %load_ext workbench
    %wb_load model.onnx --optimize                 # graph (optimized), graph_report, graph_original
    %wb_build --precision fp16 --batch 8           # engine (flags as `workbench build`; --as NAME)
    %wb_sweep --precisions fp32,fp16 --batches 1,8 # sweep_results: the wb.sweep DataFrame
    %%wb_profile --engine engine                   # layer_profile: one row per layer
    feeds = {"input": x[:8]}                       #   the cell computes the feeds: a variable named
                                                   #   `feeds`, or the cell's last expression

Why magics: a notebook reads best as a few short lines per step, with the objects left in the
namespace for the next cell. Errors (a missing variable, an impossible build setting) come back as
one `UsageError` line naming the culprit, not as a traceback from deep inside the builder.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import shlex
from typing import Any

import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

import workbench as wb
from workbench.cli import config_from_args
from workbench.errors import WorkbenchError
from workbench.evaluate.datasets import digits_test, digits_train
from workbench.viz import reprs

__all__ = ["WorkbenchMagics", "load_ipython_extension"]

FEEDS_VARIABLE = "feeds"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UsageError (one line) instead of exiting the kernel."""

    def error(self, message: str):
        raise UsageError(f"%{self.prog}: {message}\nusage: {self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None):
        raise UsageError(message or self.format_help())


def _csv(kind):
    return lambda text: [kind(v) for v in text.split(",") if v.strip()]


def _parsers() -> dict[str, _Parser]:
    load = _Parser(prog="wb_load", add_help=True)
    load.add_argument("path", help="an .onnx file")
    load.add_argument("--optimize", action="store_true", help="run wb.optimize; binds NAME_report, NAME_original")
    load.add_argument("--level", type=int, default=2, help="optimization level (0, 1, 2)")
    load.add_argument("--as", dest="name", default="graph")

    # the same flag names and meanings as `workbench build` (cli.config_from_args turns them into a BuilderConfig)
    build = _Parser(prog="wb_build")
    build.add_argument("--graph", default="graph", help="variable holding the Graph to build")
    build.add_argument("--model", help="an .onnx path to build instead of --graph")
    build.add_argument("--backend", default="cpu")
    build.add_argument("--precision", default="fp32")
    batch = build.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int)
    batch.add_argument("--profile", help="min,opt,max batch sizes")
    build.add_argument("--level", type=int, default=2, help="builder level 0..3")
    build.add_argument("--timing-cache", dest="timing_cache")
    build.add_argument("--tactic-sources", dest="tactic_sources", type=_csv(str))
    build.add_argument("--calibration", choices=["digits", "none"], default="none",
                       help="int8 calibration data: 500 digits training images, or none")
    build.add_argument("--as", dest="name", default="engine")

    sweep = _Parser(prog="wb_sweep")
    sweep.add_argument("--graph", default="graph")
    sweep.add_argument("--precisions", type=_csv(str), default=["fp32", "fp16"])
    sweep.add_argument("--batches", type=_csv(int), default=[1, 8])
    sweep.add_argument("--images", help="variable with the images (default: the digits test set)")
    sweep.add_argument("--labels", help="variable with the labels (default: the digits test labels)")
    sweep.add_argument("--iters", type=int, default=10)
    sweep.add_argument("--as", dest="name", default="sweep_results")

    profile = _Parser(prog="wb_profile")
    profile.add_argument("--engine", default="engine", help="variable holding the Engine")
    profile.add_argument("--iters", type=int, default=10)
    profile.add_argument("--as", dest="name", default="layer_profile")
    return {"load": load, "build": build, "sweep": sweep, "profile": profile}


@magics_class
class WorkbenchMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self._parsers = _parsers()

    # -- helpers --------------------------------------------------------------------------
    def _args(self, which: str, line: str) -> argparse.Namespace:
        return self._parsers[which].parse_args(shlex.split(line))

    def _variable(self, name: str, kind: type, hint: str) -> Any:
        if name not in self.shell.user_ns:
            raise UsageError(f"no variable {name!r} in the notebook; {hint}")
        value = self.shell.user_ns[name]
        if not isinstance(value, kind):
            raise UsageError(f"variable {name!r} is a {type(value).__name__}, expected a {kind.__name__}; {hint}")
        return value

    def _bind(self, **values: Any) -> None:
        self.shell.user_ns.update(values)

    # -- magics ---------------------------------------------------------------------------
    @line_magic
    def wb_load(self, line: str):
        """%wb_load PATH [--optimize] [--level N] [--as NAME]: load (and optimize) a model into NAME."""
        args = self._args("load", line)
        with _named_errors("wb_load"):
            graph = wb.load(args.path)
            if not args.optimize:
                self._bind(**{args.name: graph})
                return graph
            optimized, report = wb.optimize(graph, level=args.level)
        self._bind(**{args.name: optimized, f"{args.name}_report": report, f"{args.name}_original": graph})
        return optimized

    @line_magic
    def wb_build(self, line: str):
        """%wb_build [--precision P] [--batch N | --profile MIN,OPT,MAX] [--backend B] [--level L]
        [--timing-cache FILE] [--calibration digits|none] [--graph VAR | --model PATH] [--as NAME]"""
        args = self._args("build", line)
        with _named_errors("wb_build"):
            graph = (wb.load(args.model) if args.model else
                     self._variable(args.graph, wb.Graph, "run %wb_load PATH first, or pass --model PATH"))
            config = dataclasses.replace(config_from_args(args), calibration_data=_calibration(graph, args.calibration))
            engine = wb.build(graph, config)
        self._bind(**{args.name: engine})
        return engine

    @line_magic
    def wb_sweep(self, line: str):
        """%wb_sweep [--precisions fp32,fp16] [--batches 1,8] [--graph VAR] [--images VAR --labels VAR]
        [--iters N] [--as NAME]: `wb.sweep` on the digits test set (or your images), a DataFrame."""
        args = self._args("sweep", line)
        graph = self._variable(args.graph, wb.Graph, "run %wb_load PATH first")
        if (args.images is None) != (args.labels is None):
            raise UsageError("%wb_sweep: give both --images and --labels, or neither (the digits test set)")
        if args.images is None:
            images, labels = digits_test()
        else:
            images = self._variable(args.images, np.ndarray, "it must hold the images as a numpy array")
            labels = self._variable(args.labels, np.ndarray, "it must hold the labels as a numpy array")
        calibration = _calibration(graph, "digits") if "int8" in args.precisions and args.images is None else None
        with _named_errors("wb_sweep"):
            df = wb.sweep(graph, args.precisions, args.batches, images=images, labels=labels, iters=args.iters,
                          calibration_data=calibration)
        self._bind(**{args.name: df})
        return df

    @cell_magic
    def wb_profile(self, line: str, cell: str):
        """%%wb_profile [--engine VAR] [--iters N] [--as NAME]: run the cell, then profile the engine on
        its feeds: the cell's last expression if it is a dict (or an array, for one-input engines),
        else the variable `feeds`. One row per layer: time, share, FLOP/s, bytes."""
        args = self._args("profile", line)
        engine = self._variable(args.engine, wb.Engine, "run %wb_build first, or pass --engine VAR")
        feeds = self._run_cell_for_feeds(cell)
        if feeds is None:
            return None                      # the cell raised; IPython has shown its traceback
        feeds = _as_feeds(engine, feeds)
        with _named_errors("wb_profile"):
            df = engine.create_context().profile(feeds, iters=args.iters)
        self._bind(**{args.name: df})
        return df

    def _run_cell_for_feeds(self, cell: str) -> Any:
        """Run the cell as a normal cell; its last expression is captured (not echoed) as the feeds."""
        source = self.shell.transform_cell(cell)
        captured = "_wb_profile_feeds_"
        try:
            tree = ast.parse(source)
        except SyntaxError:
            tree = None                      # run_cell reports the syntax error itself
        if tree is not None and tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body[-1]
            tree.body[-1] = ast.copy_location(ast.Assign(targets=[ast.Name(captured, ast.Store())],
                                                         value=last.value), last)
            source = ast.unparse(ast.fix_missing_locations(tree))
        result = self.shell.run_cell(source, store_history=False)
        if not result.success:
            return None
        value = self.shell.user_ns.pop(captured, None)
        if value is None:
            if FEEDS_VARIABLE not in self.shell.user_ns:
                raise UsageError("%%wb_profile: the cell must end with the feeds (a dict input name -> array) "
                                 f"or assign them to a variable named {FEEDS_VARIABLE!r}")
            value = self.shell.user_ns[FEEDS_VARIABLE]
        return value


class _named_errors:
    """Our errors already name the culprit: show them as one line, not a traceback."""

    def __init__(self, magic: str):
        self.magic = magic

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and isinstance(exc, (WorkbenchError, FileNotFoundError)):
            raise UsageError(f"%{self.magic}: {type(exc).__name__}: {exc}") from exc
        return False


def _calibration(graph, source: str) -> list[dict] | None:
    """500 digits training images in batches of 50, fed to the graph's first input."""
    if source != "digits":
        return None
    images, _ = digits_train(500)
    name = graph.inputs[0].name
    return [{name: images[i:i + 50]} for i in range(0, len(images), 50)]


def _as_feeds(engine, value: Any) -> dict:
    if isinstance(value, np.ndarray):
        if len(engine.inputs) != 1:
            raise UsageError(f"%%wb_profile: the cell gave one array but the engine has inputs "
                             f"{[s.name for s in engine.inputs]}; give a dict input name -> array")
        return {engine.inputs[0].name: value}
    if not isinstance(value, dict):
        raise UsageError(f"%%wb_profile: feeds must be a dict input name -> array, got {type(value).__name__}")
    return value


def load_ipython_extension(ip) -> None:
    """`%load_ext workbench`: the magics above and the rich displays (`workbench.viz.reprs`)."""
    ip.register_magics(WorkbenchMagics)
    reprs.install(ip)
