"""Shared by the CUDA tactic tests: a tactic's `run` captured into a CUDA graph and replayed must
give what the eager run gave (the runtime captures whole engines: nothing in `run` may allocate,
synchronize or call an API that refuses capture)."""
from __future__ import annotations

import numpy as np

from gpu_checks import prepared

from workbench.backends.base import Layer
from workbench.builder.oracle import oracle_outputs


def assert_capturable(tactic, layer: Layer, weights: dict, inputs: list) -> None:
    import cupy
    want = oracle_outputs(layer, weights, inputs)
    shapes = layer.output_shapes or [w.shape for w in want]
    dtypes = layer.output_dtypes or [w.dtype.name for w in want]
    outs = [cupy.zeros(tuple(s), d) for s, d in zip(shapes, dtypes)]
    state, device_in = prepared(tactic, layer, weights, inputs)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        tactic.run(state, device_in, outs, stream)          # warm-up: compiles, sizes workspaces
        stream.synchronize()
        eager = [o.copy() for o in outs]
        for o in outs:
            o.fill(0)
        stream.begin_capture()
        try:
            tactic.run(state, device_in, outs, stream)
        finally:
            graph = stream.end_capture()
        graph.launch(stream)
    stream.synchronize()
    for got, ref in zip(outs, eager):
        np.testing.assert_array_equal(cupy.asnumpy(got), cupy.asnumpy(ref), err_msg=f"{tactic.name} replayed")
