"""The cuSPARSELt self-test: the sparse GEMM tactic's own calls on one small problem, in a subprocess.

Why a subprocess: a cuSPARSELt kernel that faults (an illegal instruction) poisons the CUDA context
of the whole process, so every later GPU call in it fails. `working_config` runs `check_steps` in a
child once per device and process, trying the configured layout and search, the same without search,
then the other layout; the first that passes is what tactics/sparse_gemm.py uses.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.tactics import cusparselt_binding as binding
from workbench.backends.cuda.tactics.sparse_gemm import (LAYOUT_ENV, LAYOUTS, SEARCH_ENV, SELF_TEST_ENV,
                                                          SELF_TEST_TIMEOUT_S, Config, CusparseLtGemm, Step,
                                                          _direct, configured)
from workbench.quant.sparsity import prune_2to4

__all__ = ["check_steps", "safe_algorithm_ids", "self_test", "working_config"]
log = logging.getLogger(__name__)


def check_steps(config: Config, step: Step = _direct, m: int = 64, n: int = 128, k: int = 256) -> dict:
    """Prepare and run the tactic once on relu(X[m, k] @ W[k, n] + b), W 2:4 along K, with `step` around
    each cuSPARSELt call of prepare and around run; returns the result against numpy."""
    cp = cupy()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((m, k)) * 0.5).astype(np.float16)
    w = prune_2to4((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float16), axis=0)[0]
    b = (rng.standard_normal(n) * 0.1).astype(np.float16)
    layer = Layer(name="cusparselt_check", op="FusedGemm", inputs=["x", "w", "b"], outputs=["y"], domain="workbench",
                  attrs={"epilogue_bias": 1, "activation": "Relu"}, opset=1, precision="fp16", sparse=True,
                  output_shapes=[(m, n)], output_dtypes=["float16"])
    tactic = CusparseLtGemm(config)
    state = tactic.prepare(layer, {"w": w, "b": b}, step)
    x_dev, y_dev = cp.asarray(x), cp.full((m, n), np.nan, np.float16)
    step("matmul (cusparseLtMatmul, the tactic's run)",
         lambda: tactic.run(state, [x_dev, None, None], [y_dev], cp.cuda.get_current_stream()))
    want = np.maximum(x.astype(np.float32) @ w.astype(np.float32) + b.astype(np.float32), 0)
    got = cp.asnumpy(y_dev).astype(np.float32)
    plan = state.plans[m]
    rel = float(np.linalg.norm(np.nan_to_num(got - want, nan=1e30)) / max(float(np.linalg.norm(want)), 1e-30))
    return {"rel_l2": rel, "ok": rel <= 1e-2, "config_id": plan.config_id, "max_config_id": plan.max_config_id,
            "workspace_bytes": int(plan.workspace.nbytes), "mnk": [m, n, k]}


def _self_test_child() -> int:
    """In the subprocess: check_steps with the configuration in the environment; each step is named on
    stderr before it runs (so a crash shows the last), the result is the last stdout line."""
    cp = cupy()
    cp.cuda.Device(int(os.environ.get("WB_CUSPARSELT_DEVICE", "0"))).use()
    record: dict = {"ok": False, "steps": []}

    def step(name, fn):
        print(f"step: {name}", file=sys.stderr, flush=True)
        record["steps"].append(name)
        result = fn()
        cp.cuda.Device().synchronize()
        return result
    try:
        record.update(check_steps(configured(), step))
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    print("WB_SELF_TEST " + json.dumps(record), flush=True)
    return 0 if record["ok"] else 1


def _run_child(entry: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `entry` (a function of this module returning an exit code) in a fresh Python with the
    self-test off and this package importable; raises subprocess.TimeoutExpired past the limit."""
    root = str(Path(__file__).resolve().parents[4])
    env = dict(os.environ, **{SELF_TEST_ENV: "0"}, **env_extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    code = f"import sys; from {__name__} import {entry} as t; sys.exit(t())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=SELF_TEST_TIMEOUT_S)


def self_test(config: Config, device: int = 0) -> tuple[bool, str]:
    """Run check_steps in a subprocess with `config`; (passed, what happened)."""
    try:
        done = _run_child("_self_test_child", {LAYOUT_ENV: config.layout, SEARCH_ENV: config.search,
                                               "WB_CUSPARSELT_DEVICE": str(device)})
    except subprocess.TimeoutExpired as exc:
        tail = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return False, f"timed out after {SELF_TEST_TIMEOUT_S} s; last output: {tail[-300:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("WB_SELF_TEST ")]
    if not lines:
        steps = [line[6:] for line in done.stderr.splitlines() if line.startswith("step: ")]
        other = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("step: "))
        return False, (f"the subprocess died (exit {done.returncode}) during step {steps[-1] if steps else '?'!r}"
                       f"{': ' + other.strip()[-400:] if other.strip() else ''}")
    record = json.loads(lines[-1][len("WB_SELF_TEST "):])
    if record["ok"]:
        return True, f"rel L2 {record['rel_l2']:.2e}, config id {record['config_id']}"
    if "error" in record:
        return False, f"{record['error']} (at step {record['steps'][-1] if record['steps'] else '?'!r})"
    return False, f"a wrong result: rel L2 {record.get('rel_l2')} against numpy"


_working: dict[int, Config | str] = {}
_working_lock = threading.Lock()


def working_config() -> Config:
    """The configuration this process uses: the first that passes the self-test (once per device), or a
    RuntimeError saying why none does."""
    device = cupy().cuda.runtime.getDevice()
    with _working_lock:
        if device not in _working:
            _working[device] = _settle(device)
    found = _working[device]
    if isinstance(found, str):
        raise RuntimeError(found)
    return found


def _settle(device: int) -> Config | str:
    wanted = configured()
    if os.environ.get(SELF_TEST_ENV) == "0":
        return wanted
    other = LAYOUTS[1 - LAYOUTS.index(wanted.layout)]
    tries = dict.fromkeys([wanted, Config(wanted.layout, "off"), Config(other, wanted.search), Config(other, "off")])
    failures = []
    for config in tries:
        ok, what = self_test(config, device)
        if ok:
            if failures:
                log.warning("cuSPARSELt self-test: %s; using %s (%s)", "; ".join(failures), config, what)
            return config
        failures.append(f"{config} failed: {what}")
    try:
        library = f"cuSPARSELt {binding.version()} from {binding.library_path()}"
    except Exception as exc:
        library = f"cuSPARSELt not loaded: {exc}"
    return ("cuSPARSELt failed its self-test in a subprocess, so cusparselt.gemm_2to4 stays off in this process "
            f"({library}): {'; '.join(failures)}. bench/diagnose_cusparselt.py runs each call as its own step")


# -- which algorithm ids run at all: swept in subprocesses, cached on disk ------------------------------
SWEEP_CACHE_NAME = "cusparselt_safe_ids.json"
_safe: dict[str, tuple[int, ...]] = {}


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "workbench" / SWEEP_CACHE_NAME


def safe_algorithm_ids(config: Config) -> tuple[int, ...]:
    """The algorithm ids of this library, GPU and layout that run and give the right result on a small
    problem, for the "timed" search to choose among. Swept once per machine in subprocesses (an id that
    faults kills only its child; the sweep goes on after it) and kept in ~/.cache/workbench."""
    cp = cupy()
    key = f"{binding.version()}|{cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())['name']!s}|" \
          f"{config.layout}"
    with _working_lock:
        if key not in _safe:
            path = _cache_path()
            try:
                cached = json.loads(path.read_text())
            except (OSError, ValueError):
                cached = {}
            if key not in cached:
                cached[key] = _sweep(config)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(cached, indent=1))
                tmp.replace(path)
            _safe[key] = tuple(cached[key])
    return _safe[key]


def _sweep(config: Config) -> list[int]:
    safe, start, children = [], 0, 0
    while children < 64:
        children += 1
        try:
            done = _run_child("_sweep_child", {LAYOUT_ENV: config.layout, "WB_CUSPARSELT_SWEEP_FROM": str(start)})
            lines = done.stdout.splitlines()
        except subprocess.TimeoutExpired as exc:
            lines = (exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or "")
            lines = lines.splitlines()
        tried = [int(line.split()[1]) for line in lines if line.startswith("try ")]
        safe += [int(line.split()[1]) for line in lines if line.startswith("ok ")]
        if any(line.startswith("done") for line in lines) or not tried:
            break
        start = tried[-1] + 1                        # the child died on tried[-1]: go on after it
        log.warning("cuSPARSELt algorithm id %d faults here (%s); the timed search leaves it out", tried[-1], config)
    return sorted(set(safe))


def _sweep_child() -> int:
    """In the subprocess: each algorithm id from $WB_CUSPARSELT_SWEEP_FROM on, announced before it runs."""
    cupy().cuda.Device(0).use()
    layout = configured().layout
    last = check_steps(Config(layout, "off"))["max_config_id"]
    for alg in range(int(os.environ.get("WB_CUSPARSELT_SWEEP_FROM", "0")), max(last, 0) + 1):
        print(f"try {alg}", flush=True)
        try:
            good = check_steps(Config(layout, "off", alg))["ok"]
        except Exception:                           # refused (not a fault): not a candidate
            good = False
        cupy().cuda.Device().synchronize()
        print(f"{'ok' if good else 'bad'} {alg}", flush=True)
    print("done", flush=True)
    return 0
