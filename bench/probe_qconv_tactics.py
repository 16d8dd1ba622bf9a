"""Every FusedQConv tactic on ResNet-50's int8 layer shapes at batch 256 (NHWC, int8 in and out), timed
one against another in the same run, as the autotuner times them (CUDA graph replays): cuDNN's int8 graph, our implicit-GEMM kernels (kernels.qconv1x1_*, kernels.qconv_igemm_*), and for
the 3-channel stem cuDNN's fp16-exact form. Each tactic's output is compared with the first tactic's
(max difference, fraction of values that differ), so a fast wrong kernel shows.

    python bench/probe_qconv_tactics.py --out bench/results/probe_qconv_tactics.json
"""
from __future__ import annotations

import argparse
import json
import time

import cupy as cp
import numpy as np
import onnx
from _gpu_timing import header, write_json

from workbench.backends.base import Layer
from workbench.backends.cuda import CudaBackend
from workbench.backends.cuda.registry import TACTICS
import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)

# (name, C, K, H, kernel, stride, pad, residual): input H = W, batch 256
SHAPES = [("conv1 (stem)", 3, 64, 224, 7, 2, 3, False),
          ("layer1.0.conv1", 64, 64, 56, 1, 1, 0, False), ("layer1.0.downsample", 64, 256, 56, 1, 1, 0, False),
          ("layer1.x.conv3", 64, 256, 56, 1, 1, 0, True), ("layer1.x.conv1", 256, 64, 56, 1, 1, 0, False),
          ("layer2.0.conv1", 256, 128, 56, 1, 1, 0, False), ("layer2.0.downsample", 256, 512, 56, 1, 2, 0, False),
          ("layer2.x.conv3", 128, 512, 28, 1, 1, 0, True), ("layer2.x.conv1", 512, 128, 28, 1, 1, 0, False),
          ("layer3.0.downsample", 512, 1024, 28, 1, 2, 0, False), ("layer3.x.conv3", 256, 1024, 14, 1, 1, 0, True),
          ("layer3.x.conv1", 1024, 256, 14, 1, 1, 0, False), ("layer4.0.downsample", 1024, 2048, 14, 1, 2, 0, False),
          ("layer4.x.conv3", 512, 2048, 7, 1, 1, 0, True), ("layer4.x.conv1", 2048, 512, 7, 1, 1, 0, False),
          ("layer1.x.conv2", 64, 64, 56, 3, 1, 1, False), ("layer2.0.conv2", 128, 128, 56, 3, 2, 1, False),
          ("layer2.x.conv2", 128, 128, 28, 3, 1, 1, False)]
BATCH = 256


def case(c, k, h, r, stride, pad, residual, rng):
    p = (h + 2 * pad - r) // stride + 1
    fan_in = c * r * r
    weights = {"w": rng.integers(-127, 128, (k, c, r, r)).astype(np.int8),
               "m": (rng.uniform(0.5, 1.5, k) / (np.sqrt(fan_in) * 127 * 40 / 60)).astype(np.float32),
               "b": rng.uniform(-20, 20, k).astype(np.float32)}
    inputs = ["x", "w", "m", "b"] + (["z"] if residual else [])
    layer = Layer(name="probe", op="FusedQConv", domain="workbench", inputs=inputs, outputs=["y"],
                  attrs={"kernel_shape": [r, r], "strides": [stride, stride], "pads": [pad] * 4,
                         "activation": "Relu", "activation_params": [], "residual_scale": 0.37,
                         "output_dtype": onnx.TensorProto.INT8},
                  opset=1, precision="int8", layout="NHWC", output_shapes=[(BATCH, p, p, k)], output_dtypes=["int8"])
    x = cp.asarray(rng.integers(0, 128, (BATCH, h, h, c), dtype=np.int8))
    z = cp.asarray(rng.integers(-127, 128, (BATCH, p, p, k), dtype=np.int8)) if residual else None
    return layer, weights, [x, None, None, None, z][:len(inputs)], (BATCH, p, p, k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated: probe only the shapes whose name contains one")
    ap.add_argument("--tactics", default="", help="comma-separated: probe only the tactics whose name contains one")
    ap.add_argument("--revision", default=None, help="git revision to record where the tree has no .git")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    backend = CudaBackend()
    started = time.time()
    rows = {}
    for name, *shape in SHAPES:
        if not any(part in name for part in args.only.split(",")):
            continue
        layer, weights, inputs, out_shape = case(*shape, rng)
        nbytes = sum(a.nbytes for a in inputs if a is not None) + int(np.prod(out_shape))
        row, first = {}, None
        for tactic in TACTICS:
            if tactic.source == "fallback" or not tactic.supports(layer, "int8"):
                continue
            if not any(part in tactic.name for part in args.tactics.split(",")):
                continue
            try:
                state = tactic.prepare(layer, weights)
                y = cp.zeros(out_shape, np.int8)
                stream = backend.stream()
                # as the autotuner times: 10 calls captured into a CUDA graph (no host cost)
                ms = backend.measure(lambda: tactic.run(state, inputs, [y], stream), stream, 2, 10)
            except Exception as exc:  # a refusal is a result of the probe
                row[tactic.name] = {"refused": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            entry = {"ms": round(ms, 4), "gbps": round(nbytes / ms / 1e6, 1)}
            if first is None:
                first = (tactic.name, y)
            else:
                diff = cp.abs(y.astype(cp.int32) - first[1].astype(cp.int32))
                entry.update(vs=first[0], max_diff=int(diff.max()), frac_diff=float((diff != 0).mean()))
            row[tactic.name] = entry
        rows[name] = row
        print(name, json.dumps({k: v.get("ms", "refused") for k, v in row.items()}), flush=True)
    doc = header("cuda", args.revision)
    doc.update(batch=BATCH, shapes=rows, seconds=round(time.time() - started, 1))
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
