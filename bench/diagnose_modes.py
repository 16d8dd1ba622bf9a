"""Same engine, same feeds, each way of running it: keep (eager + host copy per layer), eager,
eager with a sync per layer, CUDA graph, CUDA graph without upload, CUDA graph without memory reuse."""
from __future__ import annotations

import copy

import numpy as np

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.runtime.cuda_context import CudaExecutionContext


def no_reuse(engine):
    engine = copy.copy(engine)
    engine.network = copy.copy(engine.network)
    engine.network.meta = dict(engine.network.meta)
    plan = dict(engine.meta["memory"])
    offset, offsets = 0, {}
    for tensor, size in plan["sizes"].items():
        if tensor not in plan["aliases"]:
            offsets[tensor] = offset
            offset += (size + 255) // 256 * 256
    for view, root in plan["aliases"].items():
        offsets[view] = offsets[root]
    plan["offsets"], plan["arena_bytes"] = offsets, offset
    engine.network.meta["memory"] = plan
    return engine


def main():
    images, _ = digits_test()
    rng = np.random.default_rng(0)
    for name, graph, feeds in [("digits", wb.load(digits_model_path()), {"input": images[:8]}),
                               ("resnet18-64", wb.load(zoo.resnet18(image_size=64)),
                                {"input": rng.standard_normal((8, 3, 64, 64), np.float32)})]:
        optimized, _ = wb.optimize(graph)
        engine = wb.build(optimized, wb.BuilderConfig(backend="cuda", batch_size=8))
        out = engine.outputs[0].name
        ref = wb.build(optimized, wb.BuilderConfig(batch_size=8, tactic_sources=["numpy"])).create_context().run(feeds)[out]
        results = {}
        results["keep"] = engine.create_context().run(feeds, keep={out})[out]
        results["eager"] = engine.create_context(cuda_graph=False).run(feeds)[out]
        ctx = engine.create_context(cuda_graph=False)
        original = ctx._run_eager

        def synced(env, keep=None, timings=None):
            for step in list(ctx._steps):
                ctx._steps = [step]
                original(env, keep, timings)
                ctx.stream.synchronize()
            ctx._steps = steps
        steps = list(ctx._steps)
        ctx._run_eager = synced
        results["eager_sync"] = ctx.run(feeds)[out]
        results["graph"] = engine.create_context().run(feeds)[out]
        g2 = engine.create_context()
        g2.run(feeds)
        results["graph_2nd_run"] = g2.run(feeds)[out]
        results["graph_no_reuse"] = CudaExecutionContext(no_reuse(engine)).run(feeds)[out]
        eager_nr = CudaExecutionContext(no_reuse(engine), cuda_graph=False)
        results["eager_no_reuse"] = eager_nr.run(feeds)[out]
        print(f"== {name}: tactics {[l.tactic for l in engine.layers]}")
        for key, value in results.items():
            err = float(np.linalg.norm(value.astype(np.float64) - ref) / np.linalg.norm(ref))
            print(f"  {key:16s} rel_l2 vs CPU {err:.3g}")


if __name__ == "__main__":
    main()
