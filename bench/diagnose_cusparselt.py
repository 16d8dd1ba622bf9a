"""Which cuSPARSELt call fails, and in which configuration: the cusparselt.gemm_2to4 tactic's own calls on
one small problem (relu(X[M, K] @ W[K, N] + b), W 2:4 along K; 64 x 128 x 256 by default), one step at a
time, each named (and flushed) before it runs and followed by a device synchronize.

Every configuration runs in its own subprocess (CUDA_LAUNCH_BLOCKING=1, cuSPARSELt's API log on), because
a kernel that faults (an illegal instruction) poisons the CUDA context of its process; this parent never
touches the GPU. In order, until --budget seconds are spent:

    row/off       layout "row" (PyTorch's descriptors, the tactic's default), default algorithm
    row/library   the same, then cusparseLtMatmulSearch (what the tactic does)
    col/off       layout "col" (all column-major: what the first version did), default algorithm
    col/library   the same, then cusparseLtMatmulSearch (what failed first on the H100)
    torch         PyTorch's own calls (_cslt_compress, _cslt_sparse_mm per algorithm id, the search),
                  when an interpreter with torch is found: does this library work at all here?
    sweep/row     every ALG_CONFIG_ID 0..max alone (no search); a crash restarts after the failing id

    python bench/diagnose_cusparselt.py --out $OUT/diagnose_cusparselt.json

The JSON holds, per configuration: each step (ok / failed / running when the process died), the error,
the subprocess's exit code and last output, and the tail of cuSPARSELt's log (the full logs are written
beside the JSON as cusparselt_<configuration>.log).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINDING = ROOT / "workbench" / "backends" / "cuda" / "tactics" / "cusparselt_binding.py"
CONFIGS = (("row", "off"), ("row", "library"), ("col", "off"), ("col", "library"))
OPT_TORCH = "/opt/torch/.venv/bin/python"


# -- the parent: no CUDA here ----------------------------------------------------------------------
def binding_standalone():
    """The binding module loaded on its own (its package would import every tactic and make a CUDA context)."""
    spec = importlib.util.spec_from_file_location("_cusparselt_binding_standalone", BINDING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def environment(torch_python: str | None) -> dict:
    info: dict = {"python": sys.executable, "python_version": sys.version.split()[0],
                  "torch_python": torch_python,
                  "env": {k: v for k, v in os.environ.items()
                          if k.startswith(("WB_CUSPARSELT", "CUSPARSELT", "CUDA_"))}}
    try:
        binding = binding_standalone()
        info["library_candidates"] = binding.library_candidates()
        info["library"] = binding.library_path()
        info["library_version"] = binding.version()
        info["supported"], info["why_not"] = binding.version_supported(binding.library_version())
        info["supported_versions"] = [f"{a}.{b}.x" for a, b in binding.SUPPORTED_VERSIONS]
    except Exception as exc:
        info["library_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import cupy
        info["cupy"] = cupy.__version__
    except Exception as exc:
        info["cupy"] = f"not importable: {type(exc).__name__}: {exc}"
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,compute_mode",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    except Exception as exc:                      # no nvidia-smi: the children report the device
        info["nvidia_smi"] = f"{type(exc).__name__}: {exc}"
    return info


def find_torch_python(asked: str | None) -> str | None:
    if asked:
        return None if asked == "none" else asked
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    return OPT_TORCH if Path(OPT_TORCH).is_file() else None


def run_child(name: str, argv: list[str], out_dir: Path, args, timeout: float) -> dict:
    """One configuration in a subprocess; its output is echoed as it comes (a crash still shows the last step)."""
    safe = name.replace("/", "_")
    result_path, log_path = out_dir / f"cusparselt_{safe}.result.json", out_dir / f"cusparselt_{safe}.log"
    for path in (result_path, log_path):
        path.unlink(missing_ok=True)
    env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1", WB_CUSPARSELT_SELF_TEST="0",
               CUSPARSELT_LOG_LEVEL=str(args.log_level), CUSPARSELT_LOG_FILE=str(log_path))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    print(f"== {name} ({Path(argv[0]).name} {argv[1] if argv[1] == '-c' else Path(argv[1]).name} ...)", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(argv + ["--result", str(result_path)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
    timer = threading.Timer(timeout, child.kill)
    timer.start()
    tail: list[str] = []
    for line in child.stdout:
        print(f"   {line.rstrip()}", flush=True)
        tail = (tail + [line.rstrip()])[-60:]
    code = child.wait()
    timer.cancel()
    record = json.loads(result_path.read_text()) if result_path.is_file() else {"steps": []}
    record.update({"exit_code": code, "wall_s": round(time.perf_counter() - started, 2), "output_tail": tail,
                   "timed_out": code in (-9, 137) and time.perf_counter() - started >= timeout - 1})
    if log_path.is_file():
        record["cusparselt_log"], record["cusparselt_log_tail"] = str(log_path), \
            log_path.read_text(errors="replace").splitlines()[-40:]
    running = [s["name"] for s in record["steps"] if s.get("status") == "running"]   # the process died in it
    failed = [s["name"] for s in record["steps"] if s.get("status") == "failed"]
    record["failed_step"] = (running or failed or [None])[-1]
    record.setdefault("finished", False)
    if not record["finished"] and "error" not in record:
        record["error"] = (f"the subprocess died (exit {code}) during step {record['failed_step']!r}; it last said: "
                           + " | ".join(tail[-3:]))
    return record


def summary_line(name: str, record: dict) -> str:
    if record.get("skipped"):
        return f"{name}: skipped ({record['skipped']})"
    if "alg_results" in record:
        bad = {a: str(r.get("error") or f"rel L2 {r.get('rel_l2')}")[:100] for a, r in record["alg_results"].items()
               if not r.get("ok", (r.get("rel_l2") or 1.0) <= 1e-2)}
        ids = f"{len(record['alg_results']) - len(bad)} algorithm ids OK, failing: {bad or 'none'}"
        if record.get("ok") or "rel_l2" not in record:
            return f"{name}: {'OK, ' if record.get('ok') else ''}{ids}"
    if record.get("ok"):
        extra = {k: record[k] for k in ("rel_l2", "config_id", "max_config_id", "searched_alg") if k in record}
        return f"{name}: OK {extra} ({record.get('wall_s')} s)"
    return f"{name}: FAILED at step {record.get('failed_step')!r}: {str(record.get('error'))[:300]}"


def sweep(layout: str, max_id: int, out_dir: Path, args, deadline: float) -> dict:
    """Each ALG_CONFIG_ID alone (no search), in as few subprocesses as the crashes allow."""
    results, parts = {}, []
    pending = list(range(max_id + 1))
    while pending and time.perf_counter() < deadline:
        name = f"sweep/{layout}/{len(parts)}"
        record = run_child(name, [sys.executable, __file__, "--child-sweep", layout, "--ids",
                                  ",".join(map(str, pending)), *shape_args(args)], out_dir, args,
                           max(5.0, min(args.child_timeout, deadline - time.perf_counter())))
        parts.append(record)
        results.update({int(a): r for a, r in record.get("alg_results", {}).items()})
        crashed = record.get("current_alg")
        if record.get("finished") or crashed is None:
            pending = []
            break
        results[int(crashed)] = {"ok": False, "error": record.get("error"), "failed_step": record.get("failed_step"),
                                 "exit_code": record.get("exit_code"),
                                 "cusparselt_log_tail": record.get("cusparselt_log_tail", [])[-10:]}
        pending = [a for a in pending if a > int(crashed)]
    return {"alg_results": {str(a): results[a] for a in sorted(results)}, "not_run": pending, "parts": parts,
            "ok": bool(results) and not pending and all(r.get("ok") for r in results.values())}


def shape_args(args) -> list[str]:
    return ["--m", str(args.m), "--n", str(args.n), "--k", str(args.k)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/diagnose_cusparselt.json")
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--budget", type=float, default=80.0, help="seconds for all configurations")
    parser.add_argument("--child-timeout", type=float, default=45.0)
    parser.add_argument("--log-level", type=int, default=5, help="CUSPARSELT_LOG_LEVEL (5: every API call)")
    parser.add_argument("--torch-python", default=None, help="interpreter with torch for the control; 'none': skip")
    parser.add_argument("--configs", default=",".join(f"{a}/{b}" for a, b in CONFIGS))
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--child-config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-sweep", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ids", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_config or args.child_sweep:
        return child_main(args)
    deadline = time.perf_counter() + args.budget
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch_python = find_torch_python(args.torch_python)
    doc = {"benchmark": "diagnose_cusparselt", "mnk": [args.m, args.n, args.k],
           "environment": environment(torch_python), "configurations": {}, "summary": []}

    def save():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, out)
    print(json.dumps(doc["environment"], indent=1), flush=True)
    save()
    stop = ""
    for name in [c for c in args.configs.split(",") if c]:
        if stop or time.perf_counter() > deadline:
            doc["configurations"][name] = {"skipped": stop or "out of --budget"}
            continue
        doc["configurations"][name] = record = run_child(
            name, [sys.executable, __file__, "--child-config", name, *shape_args(args)], out.parent, args,
            max(5.0, min(args.child_timeout, deadline - time.perf_counter())))
        save()
        if record.get("failed_step") in ("import cupy", "device info", "library"):
            stop = f"{name} failed before cuSPARSELt's first call: every configuration would"
            print(f"   ({stop})", flush=True)
    if torch_python and time.perf_counter() < deadline:
        doc["configurations"]["torch"] = run_child("torch", [torch_python, "-c", TORCH_CHILD, *shape_args(args)],
                                                   out.parent, args,
                                                   max(5.0, min(60.0, deadline - time.perf_counter())))
        save()
    elif not torch_python:
        doc["configurations"]["torch"] = {"skipped": "no interpreter with torch (--torch-python)"}
    max_ids = [r.get("max_config_id", -1) for n, r in doc["configurations"].items() if n.startswith("row/")]
    max_id = max(max_ids, default=-1)
    if args.no_sweep or stop:
        doc["configurations"]["sweep/row"] = {"skipped": stop or "--no-sweep"}
    elif max_id < 0:
        doc["configurations"]["sweep/row"] = {"skipped": "no row/* configuration got as far as a plan"}
    elif time.perf_counter() < deadline:
        doc["configurations"]["sweep/row"] = sweep("row", max_id, out.parent, args, deadline)
    doc["summary"] = [summary_line(n, r) for n, r in doc["configurations"].items()]
    save()
    print("\n".join(["== summary"] + doc["summary"] + [f"wrote {out}"]), flush=True)
    return doc


# -- the children ---------------------------------------------------------------------------------
def child_main(args) -> dict:
    """One configuration (or one run of the sweep) with the tactic's code; the record is rewritten after
    every step, so a crash leaves the step that was running."""
    record: dict = {"steps": [], "finished": False}
    path = Path(args.result)

    def save():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        os.replace(tmp, path)

    def step(name, fn):
        prefix = f"[alg {record['current_alg']}] " if "current_alg" in record else ""
        entry = {"name": prefix + name, "status": "running"}
        record["steps"].append(entry)
        save()
        print(f"step {len(record['steps'])}: {prefix}{name} ...", flush=True)
        started = time.perf_counter()
        try:
            result = fn()
            if "cupy" in sys.modules:
                sys.modules["cupy"].cuda.Device().synchronize()
        except BaseException as exc:
            entry.update(status="failed", ms=round((time.perf_counter() - started) * 1e3, 2),
                         error=f"{type(exc).__name__}: {exc}")
            save()
            print(f"    FAILED: {entry['error']}", flush=True)
            raise
        entry.update(status="ok", ms=round((time.perf_counter() - started) * 1e3, 2))
        save()
        print(f"    ok ({entry['ms']} ms)", flush=True)
        return result

    save()
    try:
        cp = step("import cupy", lambda: __import__("cupy"))
        step("device info", lambda: record.update(device=device_info(cp)))
        from workbench.backends.cuda.tactics import cusparselt_binding as binding
        from workbench.backends.cuda.tactics import sparse_gemm, sparse_gemm_check
        step("library", lambda: record.update(library=library_info(binding)))
        if args.child_config:
            layout, search = args.child_config.split("/")
            record["config"] = {"layout": layout, "search": search}
            record.update(sparse_gemm_check.check_steps(sparse_gemm.Config(layout, search), step, args.m, args.n, args.k))
        else:
            record["alg_results"] = {}
            for alg in [int(a) for a in args.ids.split(",") if a]:
                record["current_alg"] = alg
                try:
                    got = sparse_gemm_check.check_steps(sparse_gemm.Config(args.child_sweep, "off", alg), step,
                                                  args.m, args.n, args.k)
                    record["alg_results"][str(alg)] = got
                except Exception as exc:
                    record["alg_results"][str(alg)] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    cp.cuda.Device().synchronize()          # a lost context ends the sweep here
                save()
            record.pop("current_alg", None)
            record["ok"] = all(r.get("ok") for r in record["alg_results"].values())
    except Exception as exc:                                 # a Python error: the process itself lives on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["ok"] = False
    record["finished"] = "current_alg" not in record
    save()
    return record


def device_info(cp) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {"name": name, "cc": f"{props['major']}.{props['minor']}", "cupy": cp.__version__,
            "runtime": cp.cuda.runtime.runtimeGetVersion(), "driver": cp.cuda.runtime.driverGetVersion()}


def library_info(binding) -> dict:
    import ctypes
    info = {"path": binding.library_path(), "version": binding.version(), "available": binding.available(),
            "why_unavailable": binding.why_unavailable()}
    code = ctypes.c_int(-1)
    binding._call("cusparseLtGetVersion", binding.handle(), ctypes.byref(code))
    info["cusparseLtGetVersion"] = code.value
    return info


TORCH_CHILD = r'''
import json, os, sys, time
argv = sys.argv[1:]
opt = dict(zip(argv[::2], argv[1::2]))
m, n, k, path = int(opt["--m"]), int(opt["--n"]), int(opt["--k"]), opt["--result"]
record = {"steps": [], "finished": False}
def save():
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1, default=str)
    os.replace(path + ".tmp", path)
def step(name, fn):
    entry = {"name": name, "status": "running"}
    record["steps"].append(entry); save()
    print(f"step {len(record['steps'])}: {name} ...", flush=True)
    started = time.perf_counter()
    try:
        out = fn()
        if "torch" in sys.modules:
            sys.modules["torch"].cuda.synchronize()
    except BaseException as exc:
        entry.update(status="failed", error=f"{type(exc).__name__}: {exc}"); save()
        print(f"    FAILED: {entry['error']}", flush=True); raise
    entry.update(status="ok", ms=round((time.perf_counter() - started) * 1e3, 2)); save()
    print(f"    ok ({entry['ms']} ms)", flush=True)
    return out
torch = step("import torch", lambda: __import__("torch"))
def versions():
    cs = torch.backends.cusparselt
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(),
            "cusparselt": cs.version() if cs.is_available() else None,
            "max_alg_id": cs.get_max_alg_id() if hasattr(cs, "get_max_alg_id") else None}
record["versions"] = step("versions", versions)
def operands():
    torch.manual_seed(0)
    w = (torch.randn(n, k, device="cuda") / k ** 0.5).half()             # W^T [N, K], 2:4 along K
    groups = w.view(n, k // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.abs().topk(2, dim=-1).indices, True)
    w = (groups * keep).view(n, k)
    x, b = (torch.randn(m, k, device="cuda") * 0.5).half(), (torch.randn(n, device="cuda") * 0.1).half()
    return w, x, b, x.float() @ w.float().t() + b.float()
w, x, b, want = step("random operands (W^T pruned 2:4 along K)", operands)
def check(y):
    return float((y.float() - want).norm() / want.norm())
try:
    wc = step("_cslt_compress", lambda: torch._cslt_compress(w))
    mm = lambda alg: torch._cslt_sparse_mm(wc, x.t(), bias=b, transpose_result=True, alg_id=alg)
    record["rel_l2"] = check(step("_cslt_sparse_mm alg 0 (default)", lambda: mm(0)))
    record["alg_results"] = {}
    for alg in range(1, (record["versions"]["max_alg_id"] or 0) + 1):
        try:
            record["alg_results"][str(alg)] = {"rel_l2": check(step(f"_cslt_sparse_mm alg {alg}", lambda: mm(alg)))}
        except Exception as exc:                     # a refused id; a lost context fails the sync below
            record["alg_results"][str(alg)] = {"error": f"{type(exc).__name__}: {exc}"}
            torch.cuda.synchronize()
    record["ok"] = record["rel_l2"] <= 1e-2
    if hasattr(torch, "_cslt_sparse_mm_search"):
        found = step("_cslt_sparse_mm_search (cusparseLtMatmulSearch)", lambda: torch._cslt_sparse_mm_search(
            wc, x.t(), bias=b, transpose_result=True))
        record["searched_alg"] = found
        record["rel_l2_searched"] = check(step(f"_cslt_sparse_mm alg {found} (searched)", lambda: mm(found)))
        record["ok"] = record["ok"] and record["rel_l2_searched"] <= 1e-2
except Exception as exc:
    record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
record["finished"] = True
save()
'''


if __name__ == "__main__":
    main()
