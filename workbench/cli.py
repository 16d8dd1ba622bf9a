"""`workbench build | run | bench | inspect | compare | sweep`: the engine from a shell, reading the
same objects and DataFrames as the notebooks.

    workbench build model.onnx -o m.wbplan --precision fp16,int8 --calibration digits --timing-cache tc.json
    workbench run m.wbplan --batch 8
    workbench bench model.onnx --batch 1,8 --precision fp16 --out bench.json
    workbench compare model.onnx --precision fp16 --against onnxruntime
    workbench sweep model.onnx --precisions fp32,fp16 --batches 1,8 --csv sweep.csv
    workbench inspect m.wbplan

A bad flag stops argparse with the flag named; a failure inside the workbench prints its one-line
error (which names the culprit) and exits with 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

import workbench as wb
from workbench import cli_commands
from workbench.builder.config import PRECISIONS
from workbench.errors import BuildError, WorkbenchError
from workbench.evaluate.metrics import latency
from workbench.quant.errors import CalibrationError

__all__ = ["main"]


# ----------------------------------------------------------------------------- flag values
def _precision_value(text: str):
    """"fp16" stays a name; "fp16,int8" is an allowed set (each layer gets the fastest of it)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    return names[0] if len(names) == 1 else frozenset(names)


def _precision_flag(text: str):
    unknown = [n for n in text.split(",") if n.strip() not in PRECISIONS]
    if unknown or not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a precision or comma list of them; "
                                         f"choose from {', '.join(PRECISIONS)}")
    return text


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of names such as a,b, got {text!r}")
    return names


def _precisions(text: str) -> list[str]:
    return [_precision_flag(name) for name in _names(text)]


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 1,8, got {text!r}")
    return values


def _override(text: str) -> tuple[str, str]:
    selector, sep, precision = text.rpartition("=")
    if not sep or not selector or precision not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"expected SELECTOR=PRECISION (a layer name, re:<regex> or op:<type>; "
                                         f"precision one of {', '.join(PRECISIONS)}), got {text!r}")
    return selector, precision


# ----------------------------------------------------------------------------- config
def config_from_args(args) -> wb.BuilderConfig:
    """Flags -> BuilderConfig. The %wb_build magic calls this with its own namespace, which has only
    some of the flags (and plain strings): a missing flag keeps the builder's default, and a bad value
    raises the builder's BuildError rather than an argparse exit."""
    def get(name, default=None):
        return getattr(args, name, default)
    profile = get("profile")
    if isinstance(profile, str):
        try:
            profile = tuple(int(v) for v in profile.split(","))
        except ValueError:
            raise BuildError(f"profile must be three integers min,opt,max, got {profile!r}") from None
    sources = get("tactic_sources")
    overrides = dict(get("layer_precision") or []) or None
    return wb.BuilderConfig(backend=get("backend", "cpu"), precision=_precision_value(get("precision", "fp32")),
                            batch_size=get("batch"), profile=profile, strict=get("strict", False),
                            layer_precisions=overrides, builder_level=get("level", 2),
                            timing_cache=get("timing_cache"), calibration_cache=get("calibration_cache"),
                            tactic_sources=_names(sources) if isinstance(sources, str) else sources)


def _graph_and_config(args) -> tuple[wb.Graph, wb.BuilderConfig]:
    config = config_from_args(args)   # first: a bad setting fails before the model is read
    graph = wb.load(args.model)
    if args.optimize:
        graph, _ = wb.optimize(graph)
    return graph, dataclasses.replace(config, calibration_data=cli_commands.calibration_feeds(graph, args.calibration))


def _summary(engine: wb.Engine) -> str:
    """What the builder did, from the engine's meta (so a loaded plan tells it too)."""
    meta, lines = engine.meta, [repr(engine)]
    layers = engine.to_dataframe()
    lines.append(f"build: {len(layers)} layers, builder level {meta.get('builder_level', '?')}, "
                 f"{meta.get('build_seconds', float('nan')):.2f} s on {meta.get('device', engine.network.backend)}")
    log = engine.build_log
    if len(log):
        chosen = log["choice"].value_counts()
        lines.append(f"tactics: {', '.join(f'{name} x{n}' for name, n in chosen.items())} "
                     f"({int(log['cached'].sum())} from the timing cache)")
    lines.append("precisions: " + ", ".join(f"{p} x{n}" for p, n in layers["precision"].value_counts().items()))
    cache = meta.get("timing_cache")
    if cache:
        where = cache.get("path") or "in memory only; --timing-cache FILE keeps it"
        lines.append(f"timing cache: {cache.get('hits', 0)} hits, {cache.get('misses', 0)} misses ({where})")
    memory = engine.memory
    if memory.get("arena_bytes") is not None:
        lines.append(f"memory: arena {memory['arena_bytes']:,} B vs naive {memory['naive_bytes']:,} B "
                     f"({memory['arena_bytes'] / max(memory['naive_bytes'], 1):.0%}), {memory['tensors']} tensors")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- verbs
def _build(args) -> int:
    graph, config = _graph_and_config(args)
    engine = wb.build(graph, config)
    engine.save(args.output)
    print(f"{_summary(engine)}\nsaved {args.output}")
    return 0


def _run(args) -> int:
    engine = wb.Engine.load(args.plan)
    context = engine.create_context()
    batch = args.batch or (engine.profile.opt if engine.profile else 1)
    feeds = cli_commands.random_feeds(engine.inputs, batch)
    for name, value in context.run(feeds).items():
        value = np.asarray(value.get() if hasattr(value, "get") else value)    # CuPy out on the GPU
        print(f"{name}: shape {value.shape} dtype {value.dtype} mean {float(np.mean(value)):.6g}")
    stats = latency(lambda: context.run(feeds), warmup=2, iters=args.iters)
    print("  ".join(f"{k}={v:.3f}" for k, v in stats.items()))
    return 0


def _bench(args) -> int:
    graph, config = _graph_and_config(args)
    cli_commands.bench(graph, config, args.batches, iters=args.iters, out=args.out)
    return 0


def _compare(args) -> int:
    graph, config = _graph_and_config(args)
    cli_commands.compare(graph, config, against=args.against, data=args.data, model_path=args.model)
    return 0


def _sweep(args) -> int:
    graph = wb.load(args.model)
    if args.optimize:
        graph, _ = wb.optimize(graph)
    cli_commands.sweep(graph, args.precisions, args.batches, data=args.data, iters=args.iters, csv=args.csv)
    return 0


def _inspect(args) -> int:
    if args.path.endswith(".wbplan"):
        engine = wb.Engine.load(args.path)
        print(_summary(engine))
        print(engine.to_dataframe().to_string())
        if args.log:
            print(engine.build_log.to_string())
    else:
        graph = wb.load(args.path)
        print(graph)
        for op, count in sorted(graph.op_counts().items(), key=lambda kv: -kv[1]):
            print(f"  {op:28s} {count}")
    return 0


# ----------------------------------------------------------------------------- parser
def _engine_flags(parser: argparse.ArgumentParser) -> None:
    """The builder's settings, shared by build, bench and compare (and named as %wb_build names them)."""
    parser.add_argument("model", help="an .onnx file")
    parser.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", type=_precision_flag, default="fp32",
                        help="fp32|tf32|fp16|bf16|int8, or an allowed set such as fp16,int8 (fastest per layer)")
    parser.add_argument("--strict", action="store_true",
                        help="with an allowed set: the lowest precision each layer supports, no timing")
    parser.add_argument("--layer-precision", dest="layer_precision", type=_override, action="append",
                        metavar="SELECTOR=PREC", help="per-layer override (repeatable): name, re:<regex> or op:<type>")
    parser.add_argument("--level", type=int, choices=range(4), default=2,
                        help="builder level: 0 first valid tactic ... 3 exhaustive timing")
    parser.add_argument("--timing-cache", dest="timing_cache", metavar="FILE",
                        help="JSON timing cache, read before tuning and written after")
    parser.add_argument("--tactic-sources", dest="tactic_sources", type=_names, metavar="a,b",
                        help="tactic sources that may compete (default: all the backend has)")
    parser.add_argument("--calibration", choices=("none", *cli_commands.DATA_SOURCES), default="none",
                        help="int8 calibration data: 500 digits training images, or random batches")
    parser.add_argument("--calibration-cache", dest="calibration_cache", metavar="FILE")
    parser.add_argument("--optimize", action="store_true", help="run wb.optimize (fusions) before building")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Inference Workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="ONNX model -> .wbplan, with the build log summary")
    _engine_flags(build)
    build.add_argument("-o", "--output", required=True)
    batch = build.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, help="fix the batch size")
    batch.add_argument("--profile", help="min,opt,max batch sizes")
    build.set_defaults(func=_build)

    run = sub.add_parser("run", help="run a .wbplan on random inputs and time it")
    run.add_argument("plan")
    run.add_argument("--batch", type=int)
    run.add_argument("--iters", type=int, default=20)
    run.set_defaults(func=_run)

    bench = sub.add_parser("bench", help="build, then latency and throughput per batch size")
    _engine_flags(bench)
    bench.add_argument("--batch", dest="batches", type=_positive_ints, default=[1, 8], metavar="1,8")
    bench.add_argument("--iters", type=int, default=20)
    bench.add_argument("--out", metavar="FILE.json", help="write the table (and settings) as JSON")
    bench.set_defaults(func=_bench)

    compare = sub.add_parser("compare", help="an engine's outputs against fp32 or onnxruntime (wb.compare)")
    _engine_flags(compare)
    compare.add_argument("--against", choices=("fp32", "onnxruntime"), default="fp32")
    compare.add_argument("--data", choices=cli_commands.DATA_SOURCES, default="digits")
    compare.set_defaults(func=_compare)

    sweep = sub.add_parser("sweep", help="precisions x batch sizes: latency, throughput, accuracy (wb.sweep)")
    sweep.add_argument("model")
    sweep.add_argument("--precisions", type=_precisions, default=["fp32", "fp16"], metavar="fp32,fp16")
    sweep.add_argument("--batches", type=_positive_ints, default=[1, 8], metavar="1,8")
    sweep.add_argument("--iters", type=int, default=10)
    sweep.add_argument("--data", choices=cli_commands.DATA_SOURCES, default="digits")
    sweep.add_argument("--optimize", action="store_true")
    sweep.add_argument("--csv", metavar="FILE.csv")
    sweep.set_defaults(func=_sweep)

    inspect = sub.add_parser("inspect", help="describe an ONNX model, or a .wbplan with its build summary")
    inspect.add_argument("path")
    inspect.add_argument("--log", action="store_true", help="also print the autotuner's per-layer log")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (WorkbenchError, OSError) as exc:
        hint = (" (from the CLI: --calibration digits|random, or --calibration-cache FILE)"
                if isinstance(exc, CalibrationError) else "")
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
