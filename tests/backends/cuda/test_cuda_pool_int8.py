"""kernels.pool2d's MaxPool on int8 / uint8 / float16 / float32 against the CPU oracle, exactly:
the 16-byte NHWC kernel (channel rows of whole 16-byte vectors, aligned buffers; unrolled 3x3 and
2x2 windows and any other), and the general kernel (NCHW, odd channel counts, unaligned buffers);
padding taps are ignored (never compared as 0), NaN propagates. Also kernels.global_pool's
GlobalMaxPool on int8 / uint8 (int8 fusion moves it after its QuantizeLinear too), and
kernels.qglobal_avg_pool's QGlobalAveragePool (int8 in and out, requantized) bit for bit."""
import numpy as np
import pytest
from gpu_checks import cp, run_tactic  # noqa: F401

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS
from workbench.backends.cuda.tactics.pool import fits_vec16
from workbench.builder.oracle import oracle_outputs

gpu = pytest.mark.gpu
DTYPES = ["int8", "uint8", "float16", "float32"]
PRECISION = {"int8": "int8", "uint8": "int8", "float16": "fp16", "float32": "fp32"}
CASES = [
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},                   # unrolled 3x3
    {"kernel_shape": [2, 2], "strides": [2, 2]},                                         # unrolled 2x2
    {"kernel_shape": [2, 3], "strides": [2, 1], "ceil_mode": 1},                         # any window
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 1, 0, 2]},
    {"kernel_shape": [3, 3], "strides": [3, 3], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [1, 1], "strides": [2, 2], "auto_pad": "SAME_LOWER"},                # kernel < stride crops
]


def _tactic(name="kernels.pool2d"):
    return next(t for t in TACTICS if t.name == name)


def _layer(dtype, attrs, layout, op="MaxPool"):
    return Layer("pool", op, ["x"], ["y"], attrs, opset=19, precision=PRECISION[dtype], layout=layout)


def _data(shape, dtype, seed, negative=False):
    """Full-range values; `negative` keeps every value below 0, so a padding tap read as 0 would win."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        high = -1 if negative and info.min < 0 else info.max
        return rng.integers(info.min, high, shape, endpoint=True).astype(dtype)
    x = rng.standard_normal(shape) * 10
    x = -np.abs(x) - 1 if negative else x
    x = x.astype(dtype)
    x.flat[::97] = np.nan
    x.flat[5::89] = -np.inf
    return x


def _check(dtype, attrs, layout, shape, seed, negative=False, op="MaxPool", tactic="kernels.pool2d"):
    x = _data(shape, dtype, seed, negative)
    layer = _layer(dtype, attrs, layout, op)
    want = oracle_outputs(layer, {}, [x])[0]
    layer.output_shapes, layer.output_dtypes = [want.shape], [want.dtype.name]
    got = run_tactic(_tactic(tactic), layer, {}, [x])[0]
    np.testing.assert_array_equal(got, want)             # NaN where the oracle has NaN
    return layer, x, want


def test_supports_int8():
    tactic = _tactic()
    attrs = {"kernel_shape": [3, 3]}
    assert tactic.supports(Layer("p", "MaxPool", ["x"], ["y"], attrs, layout="NHWC", output_dtypes=["int8"]), "int8")
    assert tactic.supports(Layer("p", "MaxPool", ["x"], ["y"], attrs, output_dtypes=["uint8"]), "fp32")
    assert not tactic.supports(Layer("p", "MaxPool", ["x"], ["y"], attrs, output_dtypes=["int32"]), "int8")
    assert not tactic.supports(Layer("p", "AveragePool", ["x"], ["y"], attrs, output_dtypes=["int8"]), "fp32")
    glob = _tactic("kernels.global_pool")
    assert glob.supports(Layer("g", "GlobalMaxPool", ["x"], ["y"], output_dtypes=["int8"]), "int8")
    assert not glob.supports(Layer("g", "GlobalAveragePool", ["x"], ["y"], output_dtypes=["int8"]), "int8")


@gpu
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nhwc_vectorized(cp, case, dtype):
    # 48 channels are whole 16-byte vectors for every dtype (3 of int8, 6 of fp16, 12 of fp32)
    _, x, want = _check(dtype, CASES[case], "NHWC", (2, 13, 14, 48), case)
    assert fits_vec16(cp.asarray(x), cp.empty(want.shape, dtype))


@gpu
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout,shape", [("NHWC", (2, 11, 12, 19)), ("", (2, 19, 11, 12)), ("", (1, 32, 9, 10))])
def test_max_pool_general(cp, case, dtype, layout, shape):
    _, x, want = _check(dtype, CASES[case], layout, shape, 100 + case)
    if layout:                                               # 19 channels: never whole 16-byte vectors
        assert not fits_vec16(cp.asarray(x), cp.empty(want.shape, dtype))


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout,shape", [("NHWC", (2, 9, 10, 32)), ("NHWC", (2, 9, 10, 3)), ("", (2, 5, 9, 10))])
def test_max_pool_padding_is_ignored(cp, dtype, layout, shape):
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [2, 2, 2, 2], "ceil_mode": 1}
    _check(dtype, attrs, layout, shape, 7, negative=True)


@gpu
@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_max_pool_unaligned_buffers_take_the_general_path(cp, dtype):
    attrs = CASES[0]
    x = _data((2, 9, 10, 32), dtype, 3)
    layer = _layer(dtype, attrs, "NHWC")
    want = oracle_outputs(layer, {}, [x])[0]
    item = np.dtype(dtype).itemsize
    storage = cp.empty(x.nbytes + 16, cp.uint8)
    x_dev = storage[item:item + x.nbytes].view(dtype).reshape(x.shape)       # contiguous, not 16-byte aligned
    x_dev[...] = cp.asarray(x)
    out = cp.empty(want.shape, dtype)
    assert not fits_vec16(x_dev, out)
    tactic = _tactic()
    state = tactic.prepare(layer, {})
    cp.cuda.Device().synchronize()      # x_dev was filled on the default stream, which `stream` does not wait for
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        tactic.run(state, [x_dev], [out], stream)
    stream.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(out), want)


@gpu
@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_max_pool_resnet_stem_shape(cp, dtype):
    _check(dtype, CASES[0], "NHWC", (4, 112, 112, 64), 11)


@gpu
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("layout,shape", [("NHWC", (3, 7, 7, 67)), ("", (3, 67, 7, 7)), ("", (2, 5, 20, 21))])
def test_global_max_pool_int8(cp, dtype, layout, shape):
    _check(dtype, {}, layout, shape, 13, op="GlobalMaxPool", tactic="kernels.global_pool")
    _check(dtype, {}, layout, shape, 17, negative=True, op="GlobalMaxPool", tactic="kernels.global_pool")


@gpu
def test_vectorized_max_pool_is_capturable(cp):
    from graph_checks import assert_capturable
    x = _data((2, 9, 9, 32), "int8", 5)
    assert_capturable(_tactic(), _layer("int8", CASES[0], "NHWC"), {}, [x])


def _qgap_layer(layout):
    return Layer("gap", "QGlobalAveragePool", ["x", "m"], ["y"], domain="workbench", opset=1, precision="int8",
                 layout=layout)


@pytest.mark.parametrize("op,domain,precision,ok", [("QGlobalAveragePool", "workbench", "int8", True),
                                                   ("QGlobalAveragePool", "workbench", "fp32", False),
                                                   ("GlobalAveragePool", "", "int8", False)])
def test_quantized_global_pool_supports(op, domain, precision, ok):
    layer = Layer("g", op, ["x", "m"], ["y"], domain=domain, output_shapes=[(2, 8, 1, 1)])
    assert _tactic("kernels.qglobal_avg_pool").supports(layer, precision) is ok


@gpu
@pytest.mark.parametrize("layout,shape", [("NHWC", (4, 7, 7, 2048)), ("NHWC", (3, 5, 6, 67)), ("", (3, 67, 7, 7)),
                                          ("", (2, 5, 20, 21))])
@pytest.mark.parametrize("multiplier", [0.37, 24.5, 500.0])
def test_quantized_global_average_pool_is_the_oracle_exactly(cp, layout, shape, multiplier):
    """Integer sums, the oracle's float32 factor M / count, half to even, saturation: bit for bit.
    M = 24.5 over 7x7 pixels makes the factor exactly 0.5, so odd sums are ties; 500 saturates."""
    x = _data(shape, "int8", 21)
    weights = {"m": np.array(multiplier, np.float32)}
    layer = _qgap_layer(layout)
    want = oracle_outputs(layer, weights, [x, weights["m"]])[0]
    layer.output_shapes, layer.output_dtypes = [want.shape], ["int8"]
    got = run_tactic(_tactic("kernels.qglobal_avg_pool"), layer, weights, [x, weights["m"]])[0]
    np.testing.assert_array_equal(got, want)
    if multiplier == 500.0:
        assert {-128, 127} <= set(np.unique(want).tolist())
