"""Which INT8 convolution paths exist on this GPU, and how fast they are against fp16: the ResNet-50
conv shapes at batch 256, NHWC, each built as one cuDNN frontend graph

    fp16:  conv_fprop(half, fp32 accumulate) -> bias -> relu -> half
    int8:  conv_fprop(int8, int32 accumulate) -> * scale[K] -> + bias[K] (-> + residual int8 * s) -> relu -> int8

plus cuBLASLt's int8 GEMM (torch._int_mm) against an fp16 GEMM for the 1x1 shapes, as a second opinion.
Each variant records whether cuDNN builds a plan for it, the best of its first candidate plans, and the
rel L2 of the int8 result against a float64 reference on the host.

    python bench/probe_int8_conv.py --out $OUT/probe_int8_conv.json
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

import cupy as cp
import cudnn
import numpy as np

# (name, C, K, H, R, stride): input H = W
SHAPES = [("l1.conv1", 64, 64, 56, 1, 1), ("l1.conv2", 64, 64, 56, 3, 1), ("l1.conv3", 64, 256, 56, 1, 1),
          ("l1.next", 256, 64, 56, 1, 1), ("l2.conv2", 128, 128, 28, 3, 1), ("l2.conv3", 128, 512, 28, 1, 1),
          ("l3.conv2", 256, 256, 14, 3, 1), ("l3.conv3", 256, 1024, 14, 1, 1), ("l3.next", 1024, 256, 14, 1, 1),
          ("l4.conv2", 512, 512, 7, 3, 1), ("l4.conv3", 512, 2048, 7, 1, 1), ("l2.0.conv2s2", 128, 128, 56, 3, 2),
          ("conv1", 4, 64, 224, 7, 2)]
F32, I32, I8, F16 = cudnn.data_type.FLOAT, cudnn.data_type.INT32, cudnn.data_type.INT8, cudnn.data_type.HALF
HANDLE = cudnn.create_handle()


def nhwc(n, c, h, w):
    return [n, c, h, w], [h * w * c, 1, w * c, c]


def timed(fn, reps=20):
    fn()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    samples = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        samples.append(cp.cuda.get_elapsed_time(start, stop))
    return sorted(samples)[len(samples) // 2]


def build(n, c, k, h, r, stride, mode, residual=False, out_dtype=None):
    io = F16 if mode == "fp16" else I8
    g = cudnn.pygraph(handle=HANDLE, io_data_type=io, intermediate_data_type=F32,
                      compute_data_type=F32 if mode == "fp16" else I32)
    pad = r // 2
    p = (h + 2 * pad - r) // stride + 1
    xd, xs = nhwc(n, c, h, h)
    x = g.tensor(name="X", dim=xd, stride=xs, data_type=io)
    w = g.tensor(name="W", dim=[k, c, r, r], stride=[r * r * c, 1, r * c, c], data_type=io)
    y = g.conv_fprop(image=x, weight=w, padding=[pad, pad], stride=[stride, stride], dilation=[1, 1],
                     compute_data_type=F32 if mode == "fp16" else I32, name="conv")
    t = {"x": x, "w": w}
    if mode != "fp16":
        y.set_data_type(F32 if mode == "int8" else I32)
        t["s"] = g.tensor(name="S", dim=[1, k, 1, 1], stride=[k, 1, k, k], data_type=F32)
        y = g.mul(a=y, b=t["s"], compute_data_type=F32, name="scale")
    t["b"] = g.tensor(name="B", dim=[1, k, 1, 1], stride=[k, 1, k, k], data_type=F32 if mode != "fp16" else F16)
    y = g.bias(input=y, bias=t["b"], compute_data_type=F32, name="bias")
    yd, ys = nhwc(n, k, p, p)
    if residual:
        t["z"] = g.tensor(name="Z", dim=yd, stride=ys, data_type=io)
        if mode != "fp16":
            t["zs"] = g.tensor(name="ZS", dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=F32)
            z = g.mul(a=t["z"], b=t["zs"], compute_data_type=F32, name="zscale")
        else:
            z = t["z"]
        y = g.add(a=y, b=z, compute_data_type=F32, name="res")
    y = g.relu(input=y, compute_data_type=F32, name="relu")
    y.set_output(True).set_dim(yd).set_stride(ys).set_data_type(out_dtype or io)
    t["y"] = y
    g.validate()
    g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support()
    ok = []
    for i in range(min(8, g.get_execution_plan_count())):
        try:
            g.build_plan_at_index(i)
            ok.append(i)
        except Exception:
            pass
    if not ok:
        raise RuntimeError("no plan builds")
    ws = cp.empty(max(1, max(g.get_workspace_size_plan_at_index(i) for i in ok)), dtype=np.uint8)
    return g, t, ok, ws, p


def run_variant(name, c, k, h, r, stride, mode, residual, out_dtype=None):
    n = 256
    rng = np.random.default_rng(0)
    g, t, ok, ws, p = build(n, c, k, h, r, stride, mode, residual, out_dtype)
    if mode == "fp16":
        x = cp.asarray(rng.standard_normal((n, h, h, c)).astype(np.float16))
        w = cp.asarray((rng.standard_normal((k, r, r, c)) * 0.05).astype(np.float16))
        b = cp.asarray(rng.standard_normal(k).astype(np.float16))
        y = cp.empty((n, p, p, k), np.float16)
        pack = {t["x"]: x.data.ptr, t["w"]: w.data.ptr, t["b"]: b.data.ptr, t["y"]: y.data.ptr}
        if residual:
            z = cp.asarray(rng.standard_normal((n, p, p, k)).astype(np.float16))
            pack[t["z"]] = z.data.ptr
    else:
        x = cp.asarray(rng.integers(-127, 128, (n, h, h, c), dtype=np.int8))
        w = cp.asarray(rng.integers(-127, 128, (k, r, r, c), dtype=np.int8))
        s = cp.asarray(np.full(k, 1.0 / (np.sqrt(c * r * r) * 60), np.float32))
        b = cp.asarray(rng.standard_normal(k).astype(np.float32) * 10)
        y = cp.empty((n, p, p, k), np.float16 if out_dtype == F16 else np.int8)
        pack = {t["x"]: x.data.ptr, t["w"]: w.data.ptr, t["s"]: s.data.ptr, t["b"]: b.data.ptr, t["y"]: y.data.ptr}
        if residual:
            z = cp.asarray(rng.integers(-127, 128, (n, p, p, k), dtype=np.int8))
            zs = cp.asarray(np.full(1, 0.5, np.float32))
            pack[t["z"]] = z.data.ptr
            pack[t["zs"]] = zs.data.ptr
    best = None
    for i in ok:
        try:
            ms = timed(lambda: g.execute_plan_at_index(pack, ws.data.ptr, i, handle=HANDLE))
        except Exception as exc:
            continue
        if best is None or ms < best[0]:
            best = (ms, i)
    flops = 2.0 * n * p * p * k * c * r * r
    row = {"ms": best[0], "plan": best[1], "plans": ok, "tops": flops / best[0] / 1e9}
    if mode != "fp16" and r == 1 and stride == 1:       # exact check on a slice of the batch
        xs = cp.asnumpy(x[:2]).astype(np.float64).reshape(-1, c)
        acc = xs @ cp.asnumpy(w).reshape(k, c).astype(np.float64).T
        ref = acc * cp.asnumpy(s) + cp.asnumpy(b)
        if residual:
            ref = ref + cp.asnumpy(z[:2]).reshape(-1, k) * 0.5
        ref = np.maximum(ref, 0)
        got = cp.asnumpy(y[:2]).reshape(-1, k).astype(np.float64)
        if out_dtype != F16:
            ref = np.clip(np.rint(ref), -128, 127)
        row["max_abs_vs_ref"] = float(np.max(np.abs(got - ref)))
        row["frac_off"] = float(np.mean(got != ref))
    return row


def probe_int_mm(out):
    try:
        import torch
    except Exception as exc:
        out["torch"] = f"no torch: {exc}"
        return
    rows = {}
    for name, c, k, h, r, stride in SHAPES:
        if r != 1:
            continue
        m = 256 * h * h
        a8 = torch.randint(-127, 127, (m, c), dtype=torch.int8, device="cuda")
        b8 = torch.randint(-127, 127, (k, c), dtype=torch.int8, device="cuda").t()
        a16, b16 = a8.half(), b8.half()
        res = {}
        for label, fn in (("int8", lambda: torch._int_mm(a8, b8)), ("fp16", lambda: a16 @ b16)):
            try:
                res[label] = timed(fn)
            except Exception as exc:
                res[label] = f"{type(exc).__name__}: {exc}"[:200]
        rows[name] = res
    out["torch_int_mm"] = rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {"cudnn_version": cudnn.backend_version(), "device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
           "shapes": {}}
    started = time.time()
    for shape in SHAPES:
        name = shape[0]
        rows = {}
        for label, mode, residual, od in (("fp16", "fp16", False, None), ("int8", "int8", False, None),
                                          ("int8_res", "int8", True, None), ("int8_to_fp16", "int8", False, F16),
                                          ("fp16_res", "fp16", True, None)):
            try:
                rows[label] = run_variant(*shape, mode, residual, od)
            except Exception as exc:
                rows[label] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
        out["shapes"][name] = rows
        print(name, json.dumps({k: v.get("ms", v.get("error", "")[:80]) for k, v in rows.items()}), flush=True)
    probe_int_mm(out)
    out["seconds"] = time.time() - started
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out.get("torch_int_mm"), indent=0))


if __name__ == "__main__":
    main()
