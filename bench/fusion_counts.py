"""Node counts before/after `wb.optimize` and rewrites per pass, for every zoo model.

    python bench/fusion_counts.py --out bench/results/fusion_counts.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import time
from pathlib import Path

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path
from workbench.evaluate.zoo.light import LIGHT_MODELS, light_model


def _models():
    for name in LIGHT_MODELS:
        yield f"light_{name}", light_model(name)
    for name in ("resnet18", "resnet50", "mobilenet_v2", "googlenet", "bert", "mlp"):
        yield name, getattr(zoo, name)(seed=0)
    yield "digits_cnn", str(digits_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/fusion_counts.json")
    args = parser.parse_args()
    rows = []
    for name, model in _models():
        graph = wb.load(model)
        started = time.perf_counter()
        _, report = wb.optimize(graph)
        seconds = time.perf_counter() - started
        per_pass = {p.name: p.rewrites for p in report.passes if p.rewrites}
        rows.append({"model": name, "nodes_before": report.nodes_before, "nodes_after": report.nodes_after,
                     "optimize_s": round(seconds, 3), "rewrites": per_pass})
        print(f"{name:24s} {report.nodes_before:5d} -> {report.nodes_after:4d} nodes  {seconds:5.2f} s  {per_pass}")
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    device = f"CPU {platform.processor() or platform.machine()} (optimize_s is host time)"
    Path(args.out).write_text(json.dumps({"date": datetime.date.today().isoformat(), "revision": revision,
                                          "device": device,
                                          "workbench": wb.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
