"""kernels.reformat_few_channels (kernels/reformat.cu: NCHW -> NHWC for 1..4 channels) against numpy's
transpose: every element equal, bit for bit (NaN payloads, -0.0 and int8 extremes move unchanged).
Which Reformats it takes, and the shapes it refuses at run time. Its quantizing form (an int8
engine's input QuantizeLinear folded in) against the CPU oracle, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from gemm_cases import assert_graph_capturable
from gpu_checks import cp, run_tactic  # noqa: F401

from workbench.backends.base import Layer

pytestmark = pytest.mark.gpu

_NCHW_TO_NHWC = [0, 2, 3, 1]


def _tactic():
    from workbench.backends.cuda.tactics.reformat import ReformatFewChannels
    return ReformatFewChannels()


def _layer(n, c, h, w, dtype, perm=_NCHW_TO_NHWC):
    out = tuple((n, c, h, w)[p] for p in perm)
    return Layer(name="to_nhwc", op="Reformat", domain="workbench", inputs=["x"], outputs=["y"],
                 attrs={"perm": list(perm)}, opset=1, precision="fp32", layout="NHWC",
                 output_shapes=[out], output_dtypes=[np.dtype(dtype).name])


def _input(shape, dtype, rng):
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(shape).astype(dtype)
        flat = x.reshape(-1)
        flat[:3] = [np.nan, -0.0, np.inf]
        return x
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float16, np.float32])
@pytest.mark.parametrize("n,c,h,w", [(2, 3, 8, 6), (3, 1, 4, 5), (1, 2, 2, 2), (2, 4, 7, 12)])
def test_equals_numpy_transpose(cp, dtype, n, c, h, w):
    layer = _layer(n, c, h, w, dtype)
    assert _tactic().supports(layer, "fp32")
    x = _input((n, c, h, w), dtype, np.random.default_rng(c * h + w))
    got = run_tactic(_tactic(), layer, {}, [x])[0]
    want = np.ascontiguousarray(x.transpose(_NCHW_TO_NHWC))
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()


def test_graph_capturable(cp):
    layer = _layer(2, 3, 8, 8, np.int8)
    x = _input((2, 3, 8, 8), np.int8, np.random.default_rng(0))
    assert_graph_capturable(_tactic(), layer, {}, [x], (2, 8, 8, 3), np.int8)


def test_takes_only_few_channel_nchw_to_nhwc():
    assert not _tactic().supports(_layer(1, 5, 4, 4, np.int8), "int8")               # too many channels
    assert not _tactic().supports(_layer(1, 3, 3, 5, np.int8), "int8")               # H * W = 15
    assert not _tactic().supports(_layer(1, 3, 4, 4, np.int8, [0, 3, 1, 2]), "int8")  # the other way
    assert not _tactic().supports(_layer(1, 3, 4, 4, np.float64), "fp32")            # 8-byte elements


def test_run_refuses_a_shape_it_cannot_take(cp):
    layer = _layer(1, 3, 4, 4, np.int8)
    state = _tactic().prepare(layer, {})
    x, y = cp.zeros((1, 3, 3, 5), np.int8), cp.zeros((1, 3, 5, 3), np.int8)
    with pytest.raises(ValueError, match="to_nhwc.*H \\* W a multiple of 4"):
        _tactic().run(state, [x], [y], cp.cuda.Stream.null)


def _quantizing_layer(n, c, h, w):
    layer = _layer(n, c, h, w, np.int8)
    layer.inputs, layer.precision = ["x", "s", "z"], "int8"
    return layer


@pytest.mark.parametrize("n,c,h,w", [(2, 3, 8, 6), (3, 1, 4, 5), (1, 2, 2, 2), (2, 4, 7, 12)])
def test_quantizing_reformat_is_quantize_then_transpose_bit_for_bit(cp, n, c, h, w):
    """The oracle (QuantizeLinear's CPU kernel after the transpose) exactly: ties to even, NaN to 0,
    +-inf and large values saturated."""
    from workbench.builder.oracle import oracle_outputs
    scale = np.float32(0.05)
    rng = np.random.default_rng(c * h + w)
    x = (rng.standard_normal((n, c, h, w)) * 3).astype(np.float32)
    flat = x.reshape(-1)
    flat[:6] = [np.nan, np.inf, -np.inf, 2.5 * scale, -3.5 * scale, 100.0]
    weights = {"s": np.array(scale, np.float32), "z": np.array(0, np.int8)}
    layer = _quantizing_layer(n, c, h, w)
    assert _tactic().supports(layer, "int8")
    want = oracle_outputs(layer, weights, [x, weights["s"], weights["z"]])[0]
    got = run_tactic(_tactic(), layer, weights, [x, weights["s"], weights["z"]])[0]
    assert got.dtype == np.int8 and want.dtype == np.int8 and np.array_equal(got, want)
    assert np.array_equal(want, np.ascontiguousarray(
        np.clip(np.rint(np.nan_to_num(x / scale, nan=0.0, posinf=127, neginf=-128)), -128, 127)
        .astype(np.int8).transpose(_NCHW_TO_NHWC)))


def test_quantizing_reformat_refuses_other_parameters(cp):
    layer = _quantizing_layer(1, 3, 4, 4)
    with pytest.raises(ValueError, match="float32 scale and an int8 zero point"):
        _tactic().prepare(layer, {"s": np.full(3, 0.1, np.float32), "z": np.zeros(3, np.int8)})
    layer.output_dtypes = ["uint8"]                          # the kernel writes int8 only
    assert not _tactic().supports(layer, "int8")
