"""Every cuDNN execution plan for the int8 FusedQConv graph (conv -> * M -> + B (-> + Z * s) -> ReLU -> int8)
on ResNet-50's layer shapes at batch 256, timed one against another: which of cuDNN's candidates (heuristics
modes A and B, and the fallback list) is fastest, and where in the list it sits. cudnn.qconv_int8 times only
the first few of mode A's list; this probe says what that leaves on the table. On the H100
(2026-11-21) it left nothing: mode A lists 7 plans (engine 4's knob variants, engine 2, engine 7), mode B
the same, and the best is among the first four on every shape probed.

`max_diff_vs_first` compares each plan's output with the first timed plan's. In that run every plan
differed from mode A's first (eng4_k24=3) by up to 127 on every shape: not explained yet. The plans
cudnn.qconv_int8 chose agree with our bit-exact kernels to 1 (bench/probe_qconv_tactics.py), and its
tests check the chosen plan against the CPU emulation.

    python bench/probe_cudnn_qconv_plans.py [--only layer1.x.conv2] --out bench/results/probe_cudnn_qconv_plans.json
"""
from __future__ import annotations

import argparse
import json
import time

import cupy as cp
import numpy as np
from _gpu_timing import header, write_json
from probe_qconv_tactics import SHAPES, case

from workbench.backends.cuda.tactics import cudnn_qconv
from workbench.backends.cuda.tactics.conv_spec import geometry
from workbench.backends.cuda.tactics.cudnn_conv import _handle, cudnn

MODES = ("A", "B", "FALLBACK")


def plans_of(layer, weights, inputs, out_shape, mode, limit):
    """The plan (up to `limit` candidates of one heuristics mode that build), its variant pack and output."""
    tactic = cudnn_qconv.CudnnQConv("int8")
    state = tactic.prepare(layer, weights)
    x, z = inputs[0], (inputs[4] if len(inputs) > 4 else None)
    y = cp.zeros(out_shape, np.int8)
    geo = geometry(layer, state.weights, x.shape, state.geos)
    plan = cudnn_qconv._build_plan(tactic.name, layer, geo, "int8", z, y, True, modes=(mode,),
                                   candidates=limit)
    pack = {plan.tensors["x"]: x.data.ptr, plan.tensors["w"]: state.w.data.ptr,
            plan.tensors["m"]: state.multiplier.data.ptr, plan.tensors["y"]: y.data.ptr,
            plan.tensors["b"]: state.bias.data.ptr}
    if z is not None:
        pack[plan.tensors["z"]] = z.data.ptr
        pack[plan.tensors["zs"]] = state.residual_scale.data.ptr
    return plan, pack, y


def time_plan(plan, pack, index, handle, repeats=7, calls=10):
    """Median over `repeats` of the mean of `calls` back-to-back launches (so host launch cost hides)."""
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    plan.execute(pack, handle, index)
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            plan.execute(pack, handle, index)
        stop.record()
        stop.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, stop) / calls)
    return sorted(samples)[len(samples) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated: probe only the shapes whose name contains one")
    ap.add_argument("--max-plans", type=int, default=16, help="candidates built and timed per heuristics mode")
    ap.add_argument("--revision", default=None, help="git revision to record where the tree has no .git")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    handle = _handle()
    cudnn.set_stream(handle=handle, stream=cp.cuda.get_current_stream().ptr)
    started = time.time()
    rows = {}
    for name, *shape in SHAPES:
        if not any(part in name for part in args.only.split(",")) or shape[0] % 4:
            continue
        layer, weights, inputs, out_shape = case(*shape, rng)
        row = {}
        for mode in MODES:
            try:
                plan, pack, y = plans_of(layer, weights, inputs, out_shape, mode, args.max_plans)
            except Exception as exc:
                row[mode] = {"refused": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            reference = None
            entries = []
            for index in plan.candidates:
                try:
                    ms = time_plan(plan, pack, index, handle)
                except Exception as exc:
                    entries.append({"index": index, "failed": f"{type(exc).__name__}: {exc}"[:120]})
                    continue
                try:
                    plan_name = plan.graph.get_plan_name_at_index(index)
                except Exception:
                    plan_name = None
                out = y.astype(cp.int32)
                if reference is None:
                    reference = out.copy()
                entries.append({"index": index, "name": plan_name, "ms": round(ms, 4),
                                "max_diff_vs_first": int(cp.abs(out - reference).max())})
            row[mode] = {"count": int(plan.graph.get_execution_plan_count()), "plans": entries}
            timed = [e for e in entries if "ms" in e]
            best = min(timed, key=lambda e: e["ms"]) if timed else None
            print(name, mode, len(timed), "plans; first", timed[0]["ms"] if timed else None,
                  "best", best, flush=True)
        rows[name] = row
    doc = header("cuda", args.revision)
    doc.update(batch=256, shapes=rows, seconds=round(time.time() - started, 1))
    write_json(args.out, doc)
    print(json.dumps({"seconds": doc["seconds"]}))


if __name__ == "__main__":
    main()
