"""CPU engine vs onnxruntime (CPU) on the same models, same inputs, same process.

Writes one JSON with, per model: our median latency, onnxruntime's, their ratio, and the
relative L2 difference of the outputs (correctness first: a wrong engine is not timed).

    python bench/cpu_vs_onnxruntime.py --out bench/results/cpu_vs_onnxruntime.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.evaluate.metrics import latency
from workbench.evaluate.zoo.light import light_model


def _cases():
    images, _ = digits_test()
    yield "digits_cnn b32", onnx.load(digits_model_path()), {"input": images[:32]}, 32
    rng = np.random.default_rng(0)
    yield "resnet50 b1", zoo.resnet50(seed=0), {"input": rng.standard_normal((1, 3, 224, 224), np.float32)}, 1
    yield "mobilenet_v2 b8", zoo.mobilenet_v2(seed=0), {"input": rng.standard_normal((8, 3, 224, 224), np.float32)}, 8
    ids = rng.integers(0, 1000, (8, 16), dtype=np.int64)
    yield "bert-2l-128h b8", zoo.bert(seed=0), {"input_ids": ids, "attention_mask": np.ones_like(ids)}, 8
    model = light_model("inception_v1")
    yield "light_inception_v1 b1", model, {"data_0": rng.standard_normal((1, 3, 224, 224), np.float32)}, None


def measure(iters: int) -> list[dict]:
    rows = []
    for name, model, feeds, batch in _cases():
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        started = time.perf_counter()
        config = wb.BuilderConfig(batch_size=batch) if batch else None
        if name.startswith("bert"):
            config = wb.BuilderConfig(input_shapes={k: v.shape for k, v in feeds.items()})
        context = wb.build(wb.load(model), config).create_context()
        build_s = time.perf_counter() - started
        ours = context.run(feeds)
        theirs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        error = max(float(np.linalg.norm(ours[k] - theirs[k]) / max(np.linalg.norm(theirs[k]), 1e-30)) for k in theirs)
        ours_t = latency(lambda: context.run(feeds), warmup=2, iters=iters)
        ort_t = latency(lambda: session.run(None, feeds), warmup=2, iters=iters)
        rows.append({"model": name, "build_s": round(build_s, 3), "rel_l2_vs_onnxruntime": error,
                     "workbench.median_ms": ours_t["latency.median_ms"], "onnxruntime.median_ms": ort_t["latency.median_ms"],
                     "slowdown_vs_onnxruntime": ours_t["latency.median_ms"] / ort_t["latency.median_ms"]})
        print(f"{name:24s} ours {ours_t['latency.median_ms']:9.2f} ms  onnxruntime {ort_t['latency.median_ms']:8.2f} ms"
              f"  rel L2 {error:.1e}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/cpu_vs_onnxruntime.json")
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"date": datetime.date.today().isoformat(), "device": f"CPU {platform.processor() or platform.machine()}",
              "revision": revision, "onnxruntime": ort.__version__, "workbench": wb.__version__,
              "note": "CPU backend is the numpy oracle; it is expected to be slower than onnxruntime",
              "rows": measure(args.iters)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
