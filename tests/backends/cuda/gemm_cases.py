"""Shared by the GEMM tactic tests: random operands, Layer builders, and the check that a tactic's
`run` is captured into a CUDA graph without allocating device memory."""
from __future__ import annotations

import numpy as np

from gpu_checks import prepared

from workbench.backends.base import Layer
from workbench.builder.oracle import rel_l2

DT = {"fp32": np.float32, "tf32": np.float32, "fp16": np.float16}
ACTIVATIONS = [("", []), ("Relu", []), ("Clip", [-0.5, 0.75]), ("LeakyRelu", [0.2]), ("Sigmoid", []),
               ("Tanh", []), ("SiLU", []), ("HardSwish", []), ("Gelu", [0.0]), ("Gelu", [1.0])]


def rand(rng, shape, precision, scale=0.5):
    return np.asarray(rng.standard_normal(shape) * scale).astype(DT[precision])


def layer(op, inputs, precision, attrs=None, domain=""):
    return Layer(name=f"{op.lower()}_test", op=op, inputs=inputs, outputs=["y"], attrs=attrs or {},
                 domain=domain, opset=17, precision=precision)


def fused(inputs, precision, **attrs):
    return layer("FusedGemm", inputs, precision, attrs, "workbench")


def assert_graph_capturable(tactic, lay: Layer, weights: dict, inputs: list, out_shape, out_dtype):
    """Warm up eagerly, then capture one `run` into a CUDA graph while counting memory-pool
    allocations; replaying the graph must give the eager result."""
    import cupy as cp
    from cupy.cuda import memory_hook

    class CountMallocs(memory_hook.MemoryHook):
        name = "count_mallocs"

        def __init__(self):
            self.calls = 0

        def malloc_preprocess(self, **kwargs):
            self.calls += 1

    out = cp.zeros(out_shape, out_dtype)
    state, device_inputs = prepared(tactic, lay, weights, inputs)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        tactic.run(state, device_inputs, [out], stream)            # warm-up: compiles, lazy plans
        stream.synchronize()
        want = cp.asnumpy(out)
        out.fill(0)
        hook = CountMallocs()
        with hook:
            stream.begin_capture()
            try:
                tactic.run(state, device_inputs, [out], stream)
            finally:
                graph = stream.end_capture()
        graph.launch(stream)
    stream.synchronize()
    assert hook.calls == 0, f"{tactic.name}: run allocated device memory {hook.calls} times"
    assert rel_l2(cp.asnumpy(out), want) < 1e-6, f"{tactic.name}: the graph replay differs from the eager run"
