"""The loop both GPU benchmark scripts share: for each (batch, precision), one run record with our
engine, torch eager and torch.compile measured in the same process on the same inputs, their
output differences from the float32 torch reference, the ratios, and the acceptance targets.

The JSON is rewritten after every step, so a run cut off by the machine's time limit still
returns what it measured.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from _gpu_timing import feed_sets, header, measure_engine, rel_l2, require_backend, write_json

__all__ = ["add_common_args", "run_benchmark"]

# end-to-end output tolerance vs the float32 reference (the per-layer limits)
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 1e-2, "bf16": 3e-2}
BUILD_TARGETS = [("build_s", 120.0, "cold-cache build <= 120 s"), ("warm_build_s", 15.0, "warm rebuild <= 15 s")]


def add_common_args(parser: argparse.ArgumentParser, batch: str, precision: str) -> None:
    add = parser.add_argument
    add("--batch", default=batch, help=f"batch sizes, comma separated (default {batch}; one per GPU run: "
                                       "torch.compile max-autotune takes minutes per batch)")
    add("--precision", default=precision, help=f"fp32, tf32, fp16, bf16, comma separated (default {precision})")
    add("--backend", default="cuda", choices=["cuda", "cpu"], help="cpu: our CPU engine vs torch on the CPU")
    add("--compile-mode", default="max-autotune",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    add("--skip-compile", action="store_true", help="measure torch eager only")
    add("--engine-only", action="store_true", help="our engine only (torch not needed; no rel_l2)")
    add("--out", default=None, help="JSON path (default bench/results/<model>_<backend>_b<batches>_<precisions>.json)")
    add("--iters", type=int, default=50)
    add("--warmup", type=int, default=10)
    add("--timing-cache", default=None, help="timing cache file (default: a fresh one, so the first build is cold)")
    add("--builder-level", type=int, default=2, choices=[0, 1, 2, 3])
    add("--seed", type=int, default=0)
    add("--revision", default=None, help="git revision to record where the tree has no .git")


def _parse_list(text: str, convert, name: str, allowed=None) -> list:
    values = [convert(v.strip()) for v in text.split(",") if v.strip()]
    bad = [v for v in values if allowed is not None and v not in allowed]
    if not values or bad:
        choices = f" of {', '.join(allowed)}" if allowed else ""
        sys.exit(f"--{name} {text!r}: expected a comma separated list{choices}")
    return values


def run_benchmark(args, *, model_name: str, make_model, make_feeds, make_torch, channels_last: bool,
                  targets: list[tuple], config: dict) -> dict:
    """Measure every (batch, precision) of `args`; returns the JSON document it wrote.

    make_model() -> the ONNX ModelProto (called once, after the device and torch are checked);
    make_feeds(batch, rng) -> {input name: numpy array} in the graph's input order;
    make_torch(model) -> a float32 torch module with the model's weights;
    targets: (precision, batch, ratio key, minimum, label) acceptance rows for this model.
    """
    script = sys.argv[0]
    require_backend(args.backend, script)
    batches = _parse_list(args.batch, int, "batch")
    precisions = _parse_list(args.precision, str, "precision", list(TOLERANCE))
    torch_module = None
    if not args.engine_only:
        try:
            import _torch_reference as torch_module
        except ImportError as exc:
            sys.exit(f"{script}: the torch reference needs PyTorch ({exc}); install it or pass --engine-only")
        if args.backend == "cuda" and not torch_module.torch.cuda.is_available():
            sys.exit(f"{script}: torch {torch_module.torch.__version__} sees no CUDA device; pass --engine-only "
                     "to measure our engine alone")
    model = make_model()
    out = args.out or (f"bench/results/{model_name}_{args.backend}_b{'-'.join(map(str, batches))}_"
                       f"{'-'.join(precisions)}.json")
    doc = header(args.backend, args.revision)
    doc["ratios_mean"] = "torch latency / our latency at the same batch: > 1 means ours is faster"
    for batch in batches:
        for precision in precisions:
            print(f"{model_name} batch {batch} {precision} on {doc['device']}", flush=True)
            run = {"model": model_name, "batch": batch, "precision": precision, "config": config}
            doc["runs"].append(run)
            _one_run(run, args, model, feed_sets(make_feeds, batch, args.seed), make_torch, torch_module,
                     channels_last, lambda: write_json(out, doc))
            run["targets"] = _targets(run, targets, args.compile_mode)
            write_json(out, doc)
            _summary(run)
    print(f"wrote {out}")
    return doc


def _one_run(run, args, model, sets, make_torch, torch_module, channels_last, save) -> None:
    """Fill `run` with ours, torch eager and torch.compile, calling save() after each step."""
    batch, precision = run["batch"], run["precision"]
    try:
        ours, ours_out = measure_engine(model, sets, backend=args.backend, precision=precision, batch=batch,
                                        timing_cache=args.timing_cache, builder_level=args.builder_level,
                                        warmup=args.warmup, iters=args.iters)
    except Exception as exc:        # record it; the torch numbers are still worth having
        ours, ours_out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}, None
        print(f"  ours FAILED: {ours['error']}", flush=True)
    run["ours"] = ours
    save()
    if torch_module is None:
        _add_throughput(run, batch)
        return
    device = "cuda" if args.backend == "cuda" else "cpu"
    try:
        parts, outputs = torch_module.measure_torch(
            make_torch(model), sets, precision=precision, device=device, channels_last=channels_last,
            compile_mode=None if args.skip_compile else args.compile_mode, warmup=args.warmup, iters=args.iters)
    except Exception as exc:        # no float32 reference: ours stands alone in this run
        run["torch_error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        print(f"  torch reference FAILED: {run['torch_error']}", flush=True)
        _add_throughput(run, batch)
        return
    run.update(parts)
    save()
    reference = outputs["reference"]
    for part, produced in [("ours", ours_out)] + [(p, outputs.get(p)) for p in parts]:
        if produced is not None:
            run[part]["rel_l2"] = rel_l2(produced, reference)
    eager_err = run["torch_eager"].get("rel_l2")
    if ours_out is not None:
        limit = max(TOLERANCE[precision], 2 * eager_err) if eager_err is not None else TOLERANCE[precision]
        ours.update({"rel_l2_limit": limit, "correct": ours["rel_l2"] <= limit})
        if not ours["correct"]:
            print(f"  WARNING: our output differs from the float32 reference by {ours['rel_l2']:.2e} "
                  f"(limit {limit:.1e})", flush=True)
    _add_throughput(run, batch)
    run["ratios"] = {f"vs_{p.removeprefix('torch_')}": round(run[p]["latency_ms"] / ours["latency_ms"], 4)
                     for p in parts if "latency_ms" in run[p] and "latency_ms" in ours}


def _add_throughput(run: dict, batch: int) -> None:
    for part in ("ours", "torch_eager", "torch_compile"):
        if "latency_ms" in run.get(part, {}):
            run[part]["throughput_per_s"] = round(batch * 1e3 / run[part]["latency_ms"], 2)


def _targets(run: dict, targets: list[tuple], compile_mode: str) -> list[dict]:
    """The issue's acceptance rows that this run measures, each with want, got and met."""
    rows, ours = [], run.get("ours", {})
    for key, limit, label in BUILD_TARGETS:
        if key in ours:
            rows.append({"target": label, "want": limit, "got": ours[key], "met": ours[key] <= limit})
    fraction = ours.get("memory", {}).get("ratio")
    if fraction is not None:
        rows.append({"target": "activation arena <= 50% of the naive sum", "want": 0.5, "got": fraction,
                     "met": fraction <= 0.5})
    for precision, batch, ratio, minimum, label in targets:
        if (precision, batch) != (run["precision"], run["batch"]):
            continue
        got = run.get("ratios", {}).get(ratio)
        row = {"target": label, "want": minimum, "got": got, "met": None if got is None else got >= minimum}
        if got is None:
            row["note"] = "not measured: the reference was skipped or failed in this run"
        if ratio == "vs_compile" and compile_mode != "max-autotune":
            row["note"] = f"torch.compile mode was {compile_mode!r}; the target is against max-autotune"
        rows.append(row)
    return rows


def _summary(run: dict) -> None:
    parts = [(p, run[p]) for p in ("ours", "torch_eager", "torch_compile") if p in run]
    for name, part in parts:
        text = part.get("error") or (f"{part['latency_ms']:9.3f} ms  {part.get('throughput_per_s', 0):10.1f}/s"
                                     f"  rel_l2 {part.get('rel_l2', float('nan')):.2e}")
        print(f"  {name:14s} {text}")
    if run.get("ratios"):
        print("  ratios " + ", ".join(f"{k} {v:.3f}" for k, v in run["ratios"].items()))
    for row in run.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        print(f"  [{verdict}] {row['target']}: got {row['got']}")
