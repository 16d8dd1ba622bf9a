"""Time every cuSPARSELt algorithm id of the 2:4 sparse GEMM tactic on one fp16 GEMM, each in its own
subprocess (an id that faults with an illegal instruction costs only its child), against the dense
nvmath/cuBLAS layer time: which kernel, if any, makes the sparse tactic pay.

    python3 bench/sweep_cusparselt_ids.py --size 4096 --ids 0-40 --out $OUT/cusparselt_ids.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import sys, json, numpy as np, cupy as cp
from workbench.backends.base import Layer
from workbench.backends.cuda.tactics.sparse_gemm import Config, CusparseLtGemm
from workbench.quant.sparsity import prune_2to4
n = int(sys.argv[1]); alg = int(sys.argv[2])
rng = np.random.default_rng(0)
w = prune_2to4(rng.standard_normal((n, n)).astype(np.float16), axis=0)[0]
b = rng.standard_normal(n).astype(np.float16)
layer = Layer(name="g", op="FusedGemm", inputs=["x", "w", "b"], outputs=["y"], domain="workbench",
              attrs={"epilogue_bias": 1}, opset=1, precision="fp16", sparse=True, output_shapes=[(n, n)],
              output_dtypes=["float16"])
tactic = CusparseLtGemm(Config("row", "off", alg))
state = tactic.prepare(layer, {"w": w, "b": b})
x = cp.asarray(rng.standard_normal((n, n)).astype(np.float16)); y = cp.empty((n, n), cp.float16)
stream = cp.cuda.get_current_stream()
for _ in range(5): tactic.run(state, [x, None, None], [y], stream)
start, stop = cp.cuda.Event(), cp.cuda.Event(); times = []
for _ in range(20):
    start.record(); tactic.run(state, [x, None, None], [y], stream); stop.record(); stop.synchronize()
    times.append(cp.cuda.get_elapsed_time(start, stop))
want = x.get().astype(np.float32) @ w.astype(np.float32) + b.astype(np.float32)
rel = float(np.linalg.norm(y.get().astype(np.float32) - want) / np.linalg.norm(want))
print("RESULT " + json.dumps({"alg": alg, "ms": sorted(times)[len(times) // 2], "rel_l2": rel}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--ids", default="0-40", help="first-last algorithm ids")
    parser.add_argument("--out", default="bench/results/cusparselt_ids.json")
    args = parser.parse_args()
    first, last = (int(v) for v in args.ids.split("-"))
    env = dict(os.environ, WB_CUSPARSELT_SELF_TEST="0")
    results = []
    for alg in range(first, last + 1):
        done = subprocess.run([sys.executable, "-c", CHILD, str(args.size), str(alg)], env=env, capture_output=True,
                              text=True, timeout=120)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        row = json.loads(line[7:]) if line else {"alg": alg, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        print(row, flush=True)
        results.append(row)
    with open(args.out, "w") as f:
        json.dump({"size": args.size, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
