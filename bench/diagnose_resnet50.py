"""ResNet-50 fp16 at a large batch: every layer against the oracle on its own inputs (last rows)."""
from __future__ import annotations

import sys

import numpy as np

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.layer_check import check_layers

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 256
check_batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
graph, _ = wb.optimize(wb.load(zoo.resnet50()))
engine = wb.build(graph, wb.BuilderConfig(backend="cuda", precision="fp16", batch_size=batch))
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), np.float32)
cpu = wb.build(graph, wb.BuilderConfig(precision="fp16", batch_size=2, tactic_sources=["numpy"])).create_context()
ref = wb.build(graph, wb.BuilderConfig(precision="fp32", batch_size=2, tactic_sources=["numpy"])).create_context()
out = engine.create_context().run({"input": x})["logits"]
for rows, label in ((slice(0, 2), "first"), (slice(batch - 2, batch), "last")):
    want16 = cpu.run({"input": x[rows]})["logits"]
    want32 = ref.run({"input": x[rows]})["logits"]
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    print(f"{label} rows: vs cpu fp16 {rel(out[rows], want16):.3g}, vs cpu fp32 {rel(out[rows], want32):.3g}, "
          f"cpu fp16 vs fp32 {rel(want16, want32):.3g}", flush=True)
small = wb.build(graph, wb.BuilderConfig(backend="cuda", precision="fp16", batch_size=check_batch))
table = check_layers(small, {"input": x[:check_batch]}, last_rows=2)
print("tactics at the check batch:", table["tactic"].value_counts().to_dict())
print(table[~table["ok"]].to_string())
print(table.groupby("tactic")["rel_l2"].max().to_string())
