"""Which layer goes wrong under CUDA-graph replay: run eagerly, then fill the arena with NaN and
replay the captured graph, and compare every tensor (memory reuse off, so every tensor survives)."""
from __future__ import annotations

import numpy as np

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path, digits_test


def snapshot(ctx, env, names):
    ctx.stream.synchronize()
    return {n: env[n].get() for n in names if n in env and hasattr(env[n], "get")}


def main():
    images, _ = digits_test()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (8, 16), dtype=np.int64)
    cases = [("digits", wb.load(digits_model_path()), {"input": images[:8]}),
             ("bert-2l", wb.load(zoo.bert()), {"input_ids": ids, "attention_mask": np.ones_like(ids)})]
    for name, graph, feeds in cases:
        optimized, _ = wb.optimize(graph)
        engine = wb.build(optimized, wb.BuilderConfig(backend="cuda", batch_size=8))
        plan = engine.meta["memory"]
        offset, offsets = 0, {}
        for tensor, size in plan["sizes"].items():          # no reuse: every tensor keeps its bytes
            if tensor in plan["aliases"]:
                continue
            offsets[tensor] = offset
            offset += (size + 255) // 256 * 256
        for view, root in plan["aliases"].items():
            offsets[view] = offsets[root]
        plan["offsets"], plan["arena_bytes"] = offsets, offset
        ctx = engine.create_context()
        outs = [n for l in engine.layers for n in l.outputs if n]
        import cupy as cp
        with ctx.stream:
            env = ctx._tensors(8)
            for k, v in feeds.items():
                env[k].set(v)
            ctx._run_eager(env)
            eager = snapshot(ctx, env, outs)
            ctx.stream.begin_capture()
            ctx._run_eager(env)
            graph_ = ctx.stream.end_capture()
            for n in outs:
                if n in env and env[n].dtype.kind == "f":
                    env[n].fill(np.nan)
            graph_.launch(ctx.stream)
            replay = snapshot(ctx, env, outs)
        print(f"== {name}: {len(engine.layers)} layers")
        for layer in engine.layers:
            for n in layer.outputs:
                if n in eager and n in replay:
                    a, b = eager[n], replay[n]
                    same = np.array_equal(a, b, equal_nan=True)
                    if not same:
                        print(f"  DIFF {layer.name} ({layer.op}, {layer.tactic}): nan in replay {np.isnan(b).mean() if b.dtype.kind == 'f' else 0:.2f}, "
                              f"maxabs {np.nanmax(np.abs(a.astype(float) - b.astype(float))) if b.size else 0}")
                    else:
                        print(f"  ok   {layer.name} ({layer.op}, {layer.tactic})")


if __name__ == "__main__":
    main()
