"""Independent branches on parallel streams: GoogLeNet (branches unmerged, so each inception block
has four) built with max_streams 1 and 4, latency of each in one process, outputs compared.

    python3 bench/streams.py --batch 1 --precision fp16 --out $OUT/streams.json
"""
from __future__ import annotations

import argparse

import numpy as np
from _gpu_timing import CupyClock, header, measure, rel_l2, write_json

import workbench as wb
from workbench.evaluate import zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--out", default="bench/results/streams_googlenet.json")
    args = parser.parse_args()
    import cupy
    graph, _ = wb.optimize(wb.load(zoo.googlenet(image_size=args.image_size)), disable=["merge_parallel_convs"])
    x = cupy.asarray(np.random.default_rng(0).standard_normal((args.batch, 3, args.image_size, args.image_size),
                                                              np.float32))
    doc = header("cuda", args.revision)
    doc.update({"model": "googlenet (branches unmerged)", "batch": args.batch, "precision": args.precision})
    outputs = {}
    for streams in (1, args.streams):
        engine = wb.build(graph, wb.BuilderConfig(backend="cuda", precision=args.precision, batch_size=args.batch,
                                                  max_streams=streams))
        ctx = engine.create_context()
        outputs[streams] = {k: cupy.asnumpy(v).astype(np.float32) for k, v in ctx.run({"input": x}).items()}
        record = measure(lambda i: ctx.run({"input": x}), CupyClock(ctx.stream), 10, args.iters)
        record.update({"arena_bytes": engine.memory["arena_bytes"],
                       "parallel_layers": engine.memory.get("streams", {}).get("parallel_layers", 0)})
        doc[f"streams_{streams}"] = record
        print(f"  max_streams {streams}: {record['latency_ms']:.3f} ms, arena {record['arena_bytes'] / 2**20:.1f} MiB",
              flush=True)
    doc["speedup"] = round(doc["streams_1"]["latency_ms"] / doc[f"streams_{args.streams}"]["latency_ms"], 4)
    doc["rel_l2_between"] = rel_l2(outputs[args.streams], outputs[1])
    print(f"  speedup {doc['speedup']}, rel L2 between the two {doc['rel_l2_between']:.2e}")
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
