"""`workbench build | run | inspect`: the engine from a shell, reading the same objects and
DataFrames as the notebooks."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.evaluate.metrics import latency


def _config(args) -> wb.BuilderConfig:
    profile = tuple(int(v) for v in args.profile.split(",")) if args.profile else None
    return wb.BuilderConfig(backend=args.backend, precision=args.precision, batch_size=args.batch, profile=profile)


def _build(args) -> int:
    engine = wb.build(wb.load(args.model), _config(args))
    engine.save(args.output)
    print(f"{engine}\nsaved {args.output}")
    return 0


def _random_feeds(engine: wb.Engine, batch: int | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in engine.inputs:
        shape = [batch or (engine.profile.opt if engine.profile else 1) if d is None else d for d in spec.shape]
        if spec.dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def _run(args) -> int:
    engine = wb.Engine.load(args.plan)
    context = engine.create_context()
    feeds = _random_feeds(engine, args.batch)
    for name, value in context.run(feeds).items():
        print(f"{name}: shape {value.shape} dtype {value.dtype} mean {float(np.mean(value)):.6g}")
    stats = latency(lambda: context.run(feeds), warmup=2, iters=args.iters)
    print("  ".join(f"{k}={v:.3f}" for k, v in stats.items()))
    return 0


def _inspect(args) -> int:
    if args.path.endswith(".wbplan"):
        engine = wb.Engine.load(args.path)
        print(engine)
        print(engine.to_dataframe().to_string())
    else:
        graph = wb.load(args.path)
        print(graph)
        for op, count in sorted(graph.op_counts().items(), key=lambda kv: -kv[1]):
            print(f"  {op:28s} {count}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description="Inference Workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="ONNX model -> .wbplan")
    build.add_argument("model")
    build.add_argument("-o", "--output", required=True)
    build.add_argument("--backend", default="cpu")
    build.add_argument("--precision", default="fp32")
    build.add_argument("--batch", type=int)
    build.add_argument("--profile", help="min,opt,max batch sizes")
    build.set_defaults(func=_build)
    run = sub.add_parser("run", help="run a .wbplan on random inputs and time it")
    run.add_argument("plan")
    run.add_argument("--batch", type=int)
    run.add_argument("--iters", type=int, default=20)
    run.set_defaults(func=_run)
    inspect = sub.add_parser("inspect", help="describe an ONNX model or a .wbplan")
    inspect.add_argument("path")
    inspect.set_defaults(func=_inspect)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
