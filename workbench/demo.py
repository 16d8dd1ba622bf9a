"""`make demo`: the bundled digits CNN, end to end, on the best backend this machine has.

Loads the model, optimizes the graph (fusion report), builds an engine, evaluates the held-out
test split, prints accuracy and a latency table, saves the plan and checks the reloaded plan
gives identical outputs.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

import workbench as wb
from workbench.evaluate.datasets import digits_model_path, digits_test
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

    engine.save(args.plan)
    reloaded = wb.Engine.load(args.plan)
    same = np.array_equal(predict(reloaded, images, batch=32), logits)
    log.info("plan saved: %s (%.1f KB); reloaded plan gives identical outputs: %s",
             Path(args.plan).resolve(), Path(args.plan).stat().st_size / 1024, same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
