"""2:4-sparse FP16 GEMM (cuSPARSELt) against our dense FP16 GEMM, on the same pruned weight, in one process.

Y = X @ W + b with X [S, S] and W [S, S] pruned to 2:4 along K (S = --size, 4096 by default), as a
one-layer ONNX model with float16 inputs and outputs, so each engine is the GEMM layer alone:

    dense      sparsity="disable": the sparse tactic cannot compete, every dense source does
    sparse     sparsity="enable", tactic_sources=["cusparselt", "cupy"]: the sparse tactic is the
               only GEMM candidate, so it is the one measured
    autotuned  sparsity="enable", every source: what the autotuner picks when all compete (its
               build log keeps the time of every candidate; not timed again here)

Latency: the engine run as an application sees it (device input, CUDA graph, CUDA events on the
context's stream, warm-up then the median of --iters), and the GEMM layer's own time from the
context's per-layer profile. The acceptance row compares the layer times: the engine run also copies
the input into its arena, the same cost in both engines. TFLOP/s count the dense-equivalent 2*S^3.
Both outputs are checked against a float32 numpy reference (relative L2 <= 1e-2). On the H100:

    python3 bench/sparse_gemm.py --out $OUT/sparse_gemm_4096_fp16.json
    python3 bench/sparse_gemm.py --size 1024 --iters 20          # a quick check
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback

import numpy as np

from _gpu_timing import CupyClock, header, measure, rel_l2, write_json

SPEEDUP_TARGET = 1.3
TARGET_LABEL = "2:4-sparse FP16 GEMM 4096^3 >= 1.3x our dense one"
TOLERANCE = 1e-2
GEMM_OPS = ("MatMul", "Gemm", "workbench::FusedGemm")
ENGINES = {"dense": {"sparsity": "disable"},
           "sparse": {"sparsity": "enable", "tactic_sources": ["cusparselt", "cupy"]},
           "autotuned": {"sparsity": "enable"}}


def make_model(w: np.ndarray, b: np.ndarray | None):
    """Y = X @ W (+ b), float16 in and out: nothing but the GEMM in the engine."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    k, n = w.shape
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t" if b is not None else "y"], name="gemm")]
    initializers = [numpy_helper.from_array(w, "w")]
    if b is not None:
        nodes.append(helper.make_node("Add", ["t", "b"], ["y"], name="bias"))
        initializers.append(numpy_helper.from_array(b, "b"))
    graph = helper.make_graph(nodes, "sparse_gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [k, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [k, n])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def build(model, builder_level: int, **config):
    import workbench as wb
    started = time.perf_counter()
    graph, _ = wb.optimize(wb.load(model))
    engine = wb.build(graph, wb.BuilderConfig(backend="cuda", precision="fp16", builder_level=builder_level,
                                              **config))
    return engine, round(time.perf_counter() - started, 3)


def gemm_choice(engine) -> dict:
    """The GEMM layer's tactic and what the autotuner logged for it."""
    layers = [l for l in engine.layers if l.qualified_op in GEMM_OPS]
    if len(layers) != 1:
        raise RuntimeError(f"expected one GEMM layer, got {[(l.name, l.qualified_op) for l in engine.layers]}")
    layer = layers[0]
    log = engine.build_log
    row = log[log["layer"] == layer.name].iloc[0]
    return {"layer": layer.name, "op": layer.qualified_op, "tactic": layer.tactic, "sparse": bool(layer.sparse),
            "candidates": list(row["candidates"]), "autotuner_times_ms": dict(row["times_ms"]),
            "rejected": dict(row["rejected"]), "reason": row["reason"]}


def time_engine(engine, x_dev, layer_name: str, flops: int, args) -> tuple[dict, np.ndarray]:
    ctx = engine.create_context()
    feeds = {"x": x_dev}
    y = ctx.run(feeds)["y"].get()                 # CuPy in, CuPy out (valid until the next run)
    record = measure(lambda i: ctx.run(feeds), CupyClock(ctx.stream), args.warmup, args.iters)
    record["cuda_graph"] = bool(getattr(ctx, "uses_cuda_graph", False))
    record["tflops"] = round(flops / (record["latency_ms"] * 1e-3) / 1e12, 2)
    try:
        profile = ctx.profile(feeds, iters=args.iters)
        record["layer_ms"] = round(float(profile.loc[profile["layer"] == layer_name, "time_ms"].iloc[0]), 4)
        record["layer_tflops"] = round(flops / (record["layer_ms"] * 1e-3) / 1e12, 2)
    except Exception as exc:                      # the engine latency stands without it
        record["layer_error"] = f"{type(exc).__name__}: {exc}"
    return record, y


def require_gpu(script: str) -> None:
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:        # ImportError, or CUDARuntimeError with no driver
        sys.exit(f"{script}: needs CuPy and an NVIDIA GPU (the sparse tensor cores are the point), but "
                 f"{type(exc).__name__}: {exc}")


def cusparselt_info() -> dict:
    """The library, its release, and the tactic's self-test (run here, in a subprocess, before any build:
    a cuSPARSELt kernel that faults would otherwise poison this process's CUDA context)."""
    try:
        from workbench.backends.cuda.tactics import cusparselt_binding as binding
        from workbench.backends.cuda.tactics import sparse_gemm, sparse_gemm_check
        if not binding.available():
            return {"available": False, "why": binding.why_unavailable()}
        info = {"available": True, "library": binding.library_path(), "version": binding.version()}
        try:
            info["self_test"] = f"passed: {sparse_gemm_check.working_config()}"
        except RuntimeError as exc:
            info.update(available=False, self_test="failed", why=str(exc))
        return info
    except Exception as exc:
        return {"available": False, "why": f"{type(exc).__name__}: {exc}"}


def speedup_rows(doc: dict) -> tuple[dict, list[dict]]:
    dense, sparse = doc.get("dense", {}), doc.get("sparse", {})
    ratios = {basis: round(dense[key] / sparse[key], 4)
              for basis, key in (("layer", "layer_ms"), ("engine", "latency_ms")) if key in dense and key in sparse}
    basis = "layer" if "layer" in ratios else "engine"
    got = ratios.get(basis)
    correct = bool(dense.get("correct")) and bool(sparse.get("correct"))
    row = {"target": TARGET_LABEL, "want": SPEEDUP_TARGET, "got": got, "basis": basis,
           "met": None if got is None else bool(got >= SPEEDUP_TARGET and correct)}
    tactic = sparse.get("gemm", {}).get("tactic")
    if tactic and tactic != "cusparselt.gemm_2to4":
        why = sparse.get("gemm", {}).get("rejected", {}).get("cusparselt.gemm_2to4", "not a candidate")
        row.update(met=None, note=f"the sparse engine's GEMM is {tactic}, not cuSPARSELt ({why})")
    elif got is None:
        row["note"] = "not measured: an engine failed (see its error)"
    elif not correct:
        row["note"] = "an output differs from the float32 reference by more than the tolerance"
    if doc["size"] != 4096:
        row["note"] = (row.get("note", "") + f"; measured at {doc['size']}^3, the target is at 4096^3").lstrip("; ")
    return ratios, [row]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--size", type=int, default=4096, help="M = N = K (a multiple of 16; default 4096)")
    add("--out", default=None, help="JSON path (default bench/results/sparse_gemm_<size>_fp16.json)")
    add("--iters", type=int, default=100)
    add("--warmup", type=int, default=20)
    add("--builder-level", type=int, default=2, choices=[1, 2, 3])
    add("--no-bias", action="store_true", help="Y = X @ W without the bias add")
    add("--seed", type=int, default=0)
    add("--revision", default=None, help="git revision to record where the tree has no .git")
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 16:
        sys.exit(f"--size {args.size}: must be a positive multiple of 16 (cuSPARSELt's fp16 structured operand)")
    require_gpu(sys.argv[0])
    import cupy

    from workbench.backends import tactic_sources
    from workbench.quant.sparsity import prune_2to4

    size, out = args.size, args.out or f"bench/results/sparse_gemm_{args.size}_fp16.json"
    flops = 2 * size ** 3
    doc = header("cuda", args.revision)
    doc.update({"benchmark": "sparse_gemm", "size": size, "precision": "fp16", "bias": not args.no_bias,
                "flops_dense_equivalent": flops, "builder_level": args.builder_level, "tolerance": TOLERANCE,
                "engines": ENGINES, "cusparselt": cusparselt_info()})
    rng = np.random.default_rng(args.seed)
    w = prune_2to4((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float16), axis=0)[0]
    b = None if args.no_bias else (rng.standard_normal(size) * 0.1).astype(np.float16)
    x = rng.standard_normal((size, size)).astype(np.float16)
    reference = x.astype(np.float32) @ w.astype(np.float32) + (0 if b is None else b.astype(np.float32))
    model, x_dev = make_model(w, b), cupy.asarray(x)
    print(f"sparse_gemm {size}^3 fp16 on {doc['device']}", flush=True)
    for part, config in ENGINES.items():
        record: dict = {}
        try:
            if part != "dense" and ("cusparselt" not in tactic_sources("cuda") or not doc["cusparselt"]["available"]):
                raise RuntimeError(f"the 'cusparselt' tactic source is not usable here ({doc['cusparselt']})")
            engine, record["build_s"] = build(model, args.builder_level, **config)
            record["gemm"] = gemm_choice(engine)
            if part != "autotuned":
                timed, y = time_engine(engine, x_dev, record["gemm"]["layer"], flops, args)
                record.update(timed)
                record["rel_l2"] = rel_l2({"y": y}, {"y": reference})
                record["correct"] = record["rel_l2"] <= TOLERANCE
            engine = None
        except Exception as exc:                  # record it: the other engines are still worth measuring
            record.update({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)})
        doc[part] = record
        cupy.get_default_memory_pool().free_all_blocks()
        write_json(out, doc)
        _print_part(part, record)
    doc["speedup"], doc["targets"] = speedup_rows(doc)
    write_json(out, doc)
    for row in doc["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        print(f"  speedup {doc['speedup']}\n  [{verdict}] {row['target']}: got {row['got']} ({row['basis']})")
    print(f"wrote {out}")
    return doc


def _print_part(part: str, record: dict) -> None:
    if "error" in record:
        print(f"  {part:9s} FAILED: {record['error']}", flush=True)
        return
    text = f"  {part:9s} {record['gemm']['tactic']:28s} build {record['build_s']:.1f} s"
    if "latency_ms" in record:
        text += (f"  engine {record['latency_ms']:.4f} ms ({record['tflops']} TFLOP/s)  layer "
                 f"{record.get('layer_ms', float('nan')):.4f} ms  rel_l2 {record['rel_l2']:.2e}")
    print(text, flush=True)


if __name__ == "__main__":
    main()
