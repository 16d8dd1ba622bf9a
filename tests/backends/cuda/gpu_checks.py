"""Shared by the CUDA tactic tests (import from here; mark test modules `pytestmark = pytest.mark.gpu`):
the `cp` fixture skips without a GPU; `assert_matches_oracle` runs one tactic on device arrays and
compares it with the CPU oracle exactly as the autotuner does."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.backends.base import Layer
from workbench.builder.oracle import check_outputs, oracle_outputs




@pytest.fixture(scope="session")
def cp():
    from workbench.backends.cuda.device import cuda_available
    if not cuda_available():
        pytest.skip("no CUDA GPU (CuPy missing or no device): the gpu tests run on the lent H100")
    import cupy
    return cupy


def prepared(tactic, layer: Layer, weights: dict, inputs: list) -> tuple:
    """(state, device inputs): `tactic` prepared and `inputs` uploaded, then the device synchronized:
    prepare's copies and the uploads run on the default stream, which a non-blocking run stream does
    not wait for (a race that showed with other processes on the GPU); the runtime waits likewise.
    Allocate default-stream buffers (cupy.zeros) before calling this."""
    import cupy
    state = tactic.prepare(layer, weights)
    device_in = [None if a is None else cupy.asarray(a) for a in inputs]
    cupy.cuda.Device().synchronize()
    return state, device_in


def run_tactic(tactic, layer: Layer, weights: dict, inputs: list, output_shapes=None, output_dtypes=None):
    """Run `tactic` on `layer` like the runtime does (outputs preallocated, run on a stream twice:
    a warm-up then the checked run) and return host arrays."""
    import cupy
    state, device_in = prepared(tactic, layer, weights, inputs)
    shapes = output_shapes or layer.output_shapes
    dtypes = output_dtypes or layer.output_dtypes
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        if tactic.is_view:
            outs = tactic.view(state, device_in, shapes)
        else:
            outs = [cupy.full(tuple(s), np.nan, dtype=d) if np.dtype(d).kind == "f" else cupy.zeros(tuple(s), d)
                    for s, d in zip(shapes, dtypes)]
            tactic.run(state, device_in, outs, stream)
            tactic.run(state, device_in, outs, stream)
    stream.synchronize()
    return [cupy.asnumpy(o) for o in outs]


def assert_matches_oracle(tactic, layer: Layer, weights: dict, inputs: list):
    """The tactic's outputs agree with the CPU kernel's within the layer precision's tolerance."""
    want = oracle_outputs(layer, weights, inputs)
    if not layer.output_shapes:
        layer.output_shapes = [tuple(w.shape) for w in want]
    if not layer.output_dtypes:
        layer.output_dtypes = [w.dtype.name for w in want]
    got = run_tactic(tactic, layer, weights, inputs)
    ok, err = check_outputs(layer, got, want)
    assert ok, f"{tactic.name} on {layer.op} ({layer.precision}, {layer.layout or 'NCHW'}): rel L2 {err:.3g}"
    return err
