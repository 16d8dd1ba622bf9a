"""Per-layer check of CUDA engines against the CPU oracle (each layer fed the engine's own inputs),
and CUDA-graph replay against eager runs: where a wrong engine goes wrong.

    python bench/diagnose_gpu.py [--out diag.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.evaluate.layer_check import check_layers


def cases():
    rng = np.random.default_rng(0)
    images, _ = digits_test()
    yield "digits", wb.load(digits_model_path()), {"input": images[:8]}
    yield "resnet18-64px", wb.load(zoo.resnet18(image_size=64)), {"input": rng.standard_normal((8, 3, 64, 64), np.float32)}
    ids = rng.integers(0, 1000, (8, 16), dtype=np.int64)
    yield "bert-2l", wb.load(zoo.bert()), {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    yield "inception-block", wb.load(zoo.inception_block(size=14)), {"input": rng.standard_normal((8, 192, 14, 14), np.float32)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="diag.json")
    parser.add_argument("--precisions", default="fp32,fp16")
    args = parser.parse_args()
    report = {}
    for name, graph, feeds in cases():
        optimized, _ = wb.optimize(graph)
        for precision in args.precisions.split(","):
            key = f"{name}/{precision}"
            try:
                engine = wb.build(optimized, wb.BuilderConfig(backend="cuda", precision=precision, batch_size=8))
                table = check_layers(engine, feeds)
                bad = table[~table["ok"]]
                graphed = engine.create_context().run(feeds)
                eager = engine.create_context(cuda_graph=False).run(feeds)
                kept = check_layers(engine, feeds)
                diff = {k: float(np.abs(graphed[k] - eager[k]).max()) for k in graphed}
                report[key] = {"bad_layers": bad.to_dict("records"), "graph_vs_eager_maxabs": diff,
                               "layers": len(table), "tactics": table["tactic"].value_counts().to_dict(),
                               "second_run_bad": int((~kept["ok"]).sum())}
            except Exception as exc:
                import traceback
                report[key] = {"error": traceback.format_exc()[-3000:]}
            print(key, json.dumps(report[key], default=str)[:1500], flush=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
