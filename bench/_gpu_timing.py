"""Measuring on one device for the GPU benchmark: clocks, our engine, and the JSON record.

Timing follows ../shared/GPU.md: warm-up first, then one timed call at a time, the median of many;
on CUDA the time is that of events recorded around the call (on the context's stream when it has
one), and the host wall time to a full device sync is kept beside it, so a context that works on
another stream, or a run bound by launch overhead, shows up as the two disagreeing. Inputs are
never all zeros and rotate over a few sets when one set fits in L2.

torch is imported only where a torch clock is asked for: `--engine-only` runs without it.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["CpuClock", "CupyClock", "device_name", "header", "interleaved", "measure", "measure_engine", "rel_l2",
           "require_backend", "torch_clock", "write_json"]

ROOT = Path(__file__).resolve().parent.parent
L2_BYTES = 50 * 2**20          # H100


class CpuClock:
    """perf_counter around each call: the clock of `--backend cpu`."""

    def time_ms(self, fn, i):
        started = time.perf_counter()
        fn(i)
        ms = (time.perf_counter() - started) * 1e3
        return ms, ms

    def synchronize(self):
        pass


class CupyClock:
    """CUDA events recorded around each call on `stream` (None: CuPy's current stream)."""

    def __init__(self, stream=None):
        import cupy
        self.cupy, self.stream = cupy, stream
        self.start, self.end = cupy.cuda.Event(), cupy.cuda.Event()

    def time_ms(self, fn, i):
        started = time.perf_counter()
        self.start.record(self.stream)
        fn(i)
        self.end.record(self.stream)
        self.synchronize()          # the whole device: also waits for work on streams we did not record on
        wall = (time.perf_counter() - started) * 1e3
        return self.cupy.cuda.get_elapsed_time(self.start, self.end), wall

    def synchronize(self):
        self.cupy.cuda.Device().synchronize()


class _TorchCudaClock:
    def __init__(self):
        import torch
        self.torch = torch
        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def time_ms(self, fn, i):
        started = time.perf_counter()
        self.start.record()
        fn(i)
        self.end.record()
        self.synchronize()
        wall = (time.perf_counter() - started) * 1e3
        return self.start.elapsed_time(self.end), wall

    def synchronize(self):
        self.torch.cuda.synchronize()


def torch_clock(device: str):
    return _TorchCudaClock() if device.startswith("cuda") else CpuClock()


def interleaved(runs: dict[str, tuple], rounds: int, warmup: int, iters: int) -> dict:
    """Time several engines in alternation: `rounds` rounds, each timing every engine (median of
    `iters` calls after `warmup`), the order reversed every other round. Engines timed one after the
    other minutes apart see different clocks and temperatures; a ratio taken within one round does
    not. Returns each engine's per-round medians."""
    names = list(runs)
    medians = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, clock = runs[name]
            medians[name].append(measure(fn, clock, warmup, iters)["latency_ms"])
    return medians


def measure(fn, clock, warmup: int, iters: int) -> dict:
    """Median latency of `fn(i)` (i = iteration, to rotate inputs) over `iters` timed calls."""
    for i in range(warmup):
        fn(i)
    clock.synchronize()
    times, walls = zip(*(clock.time_ms(fn, i) for i in range(iters)))
    q = np.percentile(times, [10, 90]) if iters > 1 else (times[0], times[0])
    return {"latency_ms": round(statistics.median(times), 4), "p10_ms": round(float(q[0]), 4),
            "p90_ms": round(float(q[1]), 4), "wall_ms": round(statistics.median(walls), 4), "iters": iters}


def rel_l2(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """Largest relative L2 difference over the outputs `want` names (float64 norms)."""
    worst = 0.0
    for name, ref in want.items():
        if name not in got:
            raise KeyError(f"output {name!r} missing: got {sorted(got)}")
        a, b = np.asarray(got[name], np.float64), np.asarray(ref, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"output {name!r}: shape {a.shape} vs reference {b.shape}")
        worst = max(worst, float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)))
    return worst


# -- device ---------------------------------------------------------------------------------------
def require_backend(backend: str, script: str) -> None:
    """Exit with a message saying what is missing when `backend` cannot run here."""
    if backend != "cuda":
        return
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:        # ImportError, or CUDARuntimeError with no driver
        sys.exit(f"{script}: --backend cuda needs CuPy and an NVIDIA GPU, but {type(exc).__name__}: {exc}.\n"
                 f"To check the script on a CPU: python {script} --backend cpu --batch 1")
    if count < 1:
        sys.exit(f"{script}: --backend cuda found no CUDA device. To check the script on a CPU: "
                 f"python {script} --backend cpu --batch 1")


def device_name(backend: str) -> str:
    if backend == "cuda":
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"CPU {model} ({os.cpu_count()} cores)"


def _revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else "unknown"


def header(backend: str, revision: str | None) -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("workbench", "torch", "cupy", "onnx"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    if backend == "cuda":
        import cupy
        versions["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        versions["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    from source_digest import source_digest
    return {"device": device_name(backend), "backend": backend, "revision": revision or _revision(),
            "source_digest": source_digest(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "versions": versions,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "runs": []}


def write_json(path: str | Path, doc: dict) -> None:
    """Write atomically (a run cut off by the time limit leaves the last complete record)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    os.replace(tmp, path)


def feed_sets(make_feeds, batch: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Three different input sets when one fits in L2 (so timing does not read a hot input), else one."""
    first = make_feeds(batch, np.random.default_rng(seed))
    count = 3 if sum(a.nbytes for a in first.values()) <= L2_BYTES else 1
    return [first] + [make_feeds(batch, np.random.default_rng(seed + i)) for i in range(1, count)]


# -- our engine -----------------------------------------------------------------------------------
def measure_engine(model, sets: list[dict[str, np.ndarray]], *, backend: str, precision: str, batch: int,
                   timing_cache: str | None, builder_level: int, warmup: int, iters: int,
                   profile_rows: int = 15, log=print, warm_build: bool = True, hold: dict | None = None,
                   **config) -> tuple[dict, dict[str, np.ndarray]]:
    """Build cold, rebuild warm with the same timing cache, run and time; returns (record, outputs of set 0).
    `config`: more BuilderConfig fields (int8: calibration_data, calibration_cache, ...). `hold`: a dict
    that gets hold[precision] = (run, clock), the engine kept alive to be timed again (`interleaved`)."""
    import workbench as wb
    cache = Path(timing_cache) if timing_cache else Path(tempfile.mkdtemp(prefix="wb-bench-")) / "timing_cache.json"
    record = {"timing_cache_preexisting": cache.exists()}
    config = wb.BuilderConfig(backend=backend, precision=precision, batch_size=batch, timing_cache=str(cache),
                              builder_level=builder_level, **config)
    for kind in ("build", "warm_build") if warm_build else ("build",):
        started = time.perf_counter()
        graph, _ = wb.optimize(wb.load(model))          # fusion is part of building an engine
        engine = wb.build(graph, config)
        record[f"{kind}_s"] = round(time.perf_counter() - started, 3)
        record[f"{kind}_timing_cache"] = engine.meta.get("timing_cache")
        log(f"  ours: {kind.replace('_', ' ')} {record[f'{kind}_s']:.1f} s")
        if kind == "build":
            first = engine
    engine = first                  # run the cold-built engine; let the rebuilt one go
    if backend == "cuda":
        import cupy
        cupy.get_default_memory_pool().free_all_blocks()
        sets = [{k: cupy.asarray(v) for k, v in s.items()} for s in sets]
        cupy.cuda.Device().synchronize()        # the context runs on its own non-blocking stream
    ctx = engine.create_context()
    outputs = {k: _to_numpy(v) for k, v in ctx.run(sets[0]).items()}
    clock = CupyClock(getattr(ctx, "stream", None)) if backend == "cuda" else CpuClock()
    record.update(measure(lambda i: ctx.run(sets[i % len(sets)]), clock, warmup, iters))
    log(f"  ours             {record['latency_ms']:9.3f} ms")
    record["memory"] = _memory(engine)
    record["layers"] = len(engine.layers)
    if hasattr(ctx, "uses_cuda_graph"):
        record["cuda_graph"] = bool(ctx.uses_cuda_graph)
    record["tactics"] = engine.to_dataframe()["tactic.name"].value_counts().to_dict()
    record["profile"] = _profile(ctx, sets[0], profile_rows)
    record["tuned_by_op"] = _tuned_by_op(engine)
    record["choices"] = _choices(engine)
    if hold is not None:
        hold[precision] = (lambda i: ctx.run(sets[i % len(sets)]), clock)
        return record, outputs
    ctx = engine = first = None         # release the arena before the pool is emptied
    if backend == "cuda":
        import cupy
        cupy.get_default_memory_pool().free_all_blocks()
    return record, outputs


def _choices(engine) -> list[dict]:
    """Per tuned layer: the candidates' times, the choice, and why others were refused (truncated)."""
    rows = []
    for row in engine.meta.get("build_log", []):
        if row.get("times_ms") or row.get("rejected"):
            rows.append({"layer": row["layer"], "choice": row["choice"],
                         "times_ms": {k: round(v, 4) for k, v in (row.get("times_ms") or {}).items()},
                         "rejected": {k: str(v)[:160] for k, v in (row.get("rejected") or {}).items()}})
    return rows


def _to_numpy(value) -> np.ndarray:
    get = getattr(value, "get", None)           # CuPy arrays copy to the host with .get()
    return np.array(get() if callable(get) and not isinstance(value, np.ndarray) else value, dtype=np.float32)


def _memory(engine) -> dict:
    memory = getattr(engine, "memory", None)
    if memory is None:
        return {"error": "Engine.memory is not available at this revision"}
    memory = dict(memory)
    if memory.get("naive_bytes"):
        memory.setdefault("ratio", round(memory["arena_bytes"] / memory["naive_bytes"], 4))
    return memory


def _profile(ctx, feeds, rows: int) -> dict:
    """The per-layer profile reduced to what explains a missed target: top layers and time per op."""
    profile = getattr(ctx, "profile", None)
    if profile is None:
        return {"error": "ExecutionContext.profile is not available at this revision"}
    try:
        df = profile(feeds, iters=10)
    except Exception as exc:        # the timings above stand without it
        return {"error": f"{type(exc).__name__}: {exc}"}
    total = float(df["time_ms"].sum())
    columns = [c for c in ("layer", "op", "tactic", "precision", "shapes", "time_ms", "percent", "tflops", "gbps")
               if c in df.columns]
    top = df.sort_values("time_ms", ascending=False).head(rows)[columns]
    by_op = df.groupby("op")["time_ms"].agg(["sum", "count"]).sort_values("sum", ascending=False)
    return {"total_ms": round(total, 4), "layers": len(df),
            "top": json.loads(top.to_json(orient="records", default_handler=str)),
            "by_op": [{"op": op, "time_ms": round(float(r["sum"]), 4), "layers": int(r["count"]),
                       "percent": round(100 * float(r["sum"]) / total, 2) if total else None}
                      for op, r in by_op.iterrows()]}


def _tuned_by_op(engine) -> list[dict]:
    """Per op, the autotuner's times of the chosen tactics (each timed alone, 10 calls in a CUDA
    graph): shares without the eager profile's launch gaps, which swamp layers of a few microseconds."""
    totals: dict[str, list] = {}
    for row in engine.meta.get("build_log", []):
        time_ms = row.get("times_ms", {}).get(row.get("choice"))
        if time_ms is not None:
            entry = totals.setdefault(row["op"], [0.0, 0])
            entry[0] += time_ms
            entry[1] += 1
    total = sum(t for t, _ in totals.values()) or 1.0
    return [{"op": op, "time_ms": round(t, 4), "layers": n, "percent": round(100 * t / total, 2)}
            for op, (t, n) in sorted(totals.items(), key=lambda kv: -kv[1][0])]
