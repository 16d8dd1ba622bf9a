"""`make demo`: the bundled digits CNN, end to end, on the best backend this machine has.

Loads the model, optimizes the graph (fusion report), builds an engine, evaluates the held-out
test split, prints accuracy and a latency table, compares precisions (FP32, TF32, FP16, BF16,
INT8 calibrated on 500 training images), saves the plan and checks the reloaded plan gives
identical outputs.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import workbench as wb
from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
from workbench.evaluate.metrics import accuracy, latency_table, predict

log = logging.getLogger("workbench.demo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="digits_cnn.wbplan", help="where to save the engine")
    parser.add_argument("--iters", type=int, default=50, help="timed runs per batch size")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)

    backend = "cpu"
    log.info("backend: %s (no GPU backend in this build: CPU engine, numerically faithful)", backend)
    graph = wb.load(digits_model_path())
    log.info("model:   %s  %s", digits_model_path().name, graph)
    optimized, report = wb.optimize(graph)
    rows = report.to_dataframe()
    log.info("\noptimize: %d -> %d nodes\n%s\n", report.nodes_before, report.nodes_after,
             rows[["pass", "new_node", "replaced_nodes"]].to_string(index=False))
    engine = wb.build(optimized, wb.BuilderConfig(backend=backend, precision="fp32", profile=(1, 32, 64)))
    log.info("engine:  %s (built in %.3f s)", engine, engine.meta["build_seconds"])

    images, labels = digits_test()
    logits = predict(engine, images, batch=32)
    log.info("\ntest split: %d images, FP32 top-1 accuracy %.2f%%", len(labels), 100 * accuracy(logits, labels))

    table = latency_table(engine, lambda b: {"input": images[:b]}, [1, 8, 32, 64], iters=args.iters)
    log.info("\nlatency (%s, median of %d runs):\n%s\n", backend, args.iters,
             table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))

    log.info("precisions (%s backend, batch 32):\n%s\n", backend,
             _precision_table(optimized, images, labels).to_string(index=False, float_format=lambda v: f"{v:,.2f}"))

    engine.save(args.plan)
    reloaded = wb.Engine.load(args.plan)
    same = np.array_equal(predict(reloaded, images, batch=32), logits)
    log.info("plan saved: %s (%.1f KB); reloaded plan gives identical outputs: %s",
             Path(args.plan).resolve(), Path(args.plan).stat().st_size / 1024, same)
    return 0 if same else 1


def _precision_table(graph, images, labels):
    """Accuracy and batch-32 latency per precision; INT8 calibrates on 500 training images (entropy)."""
    train, _ = digits_train(limit=500)
    data = [{"input": train[i:i + 50]} for i in range(0, len(train), 50)]
    rows = []
    for precision in ("fp32", "tf32", "fp16", "bf16", "int8"):
        config = wb.BuilderConfig(precision=precision, profile=(1, 32, 64),
                                  calibration_data=data if precision == "int8" else None)
        engine = wb.build(graph, config)
        median = latency_table(engine, lambda b: {"input": images[:b]}, [32], iters=10)["latency.median_ms"][0]
        rows.append({"precision": precision, "accuracy.%": 100 * accuracy(predict(engine, images, 32), labels),
                     "latency.median_ms": median, "layers": len(engine.layers), "weights.KB": engine.weight_bytes / 1024})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    raise SystemExit(main())
