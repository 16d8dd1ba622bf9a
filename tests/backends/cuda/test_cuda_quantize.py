"""kernels.quantize_linear and kernels.dequantize_linear against the CPU oracle, bit for bit:
.5 ties, saturation, NaN and infinities, per-axis parameters (NCHW and NHWC storage), uint8 with a
zero point, an omitted zero point, float16 inputs / scales / outputs, int32 DequantizeLinear, and
scales passed as activations rather than constants; per-tensor layers in both kernel forms (four
elements a thread, and one)."""
import numpy as np
import pytest
from gpu_checks import cp, run_tactic  # noqa: F401
from onnx import TensorProto

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS
from workbench.builder.oracle import oracle_outputs

gpu = pytest.mark.gpu
RNG = np.random.default_rng(0)
QUANTIZE, DEQUANTIZE = "kernels.quantize_linear", "kernels.dequantize_linear"


def _tactic(name):
    return next(t for t in TACTICS if t.name == name)


def _layer(op, zero_point=True, layout="", output_dtypes=(), **attrs):
    inputs = ["x", "scale"] + (["zero"] if zero_point else [])
    return Layer(op.lower(), op, inputs, ["y"], attrs, opset=21, precision="int8", layout=layout,
                 output_dtypes=list(output_dtypes))


def _run(op, x, scale, zero=None, constants=True, layout="", **attrs):
    """(GPU output, oracle output) of one Q or DQ layer; scale and zero point are weights unless
    `constants` is False (then they arrive as activations, like a computed scale)."""
    layer = _layer(op, zero is not None, layout, **attrs)
    inputs = [x, np.asarray(scale)] + ([np.asarray(zero)] if zero is not None else [])
    weights = dict(zip(layer.inputs[1:], inputs[1:])) if constants else {}
    want = oracle_outputs(layer, weights, inputs)[0]
    layer.output_shapes, layer.output_dtypes = [want.shape], [want.dtype.name]
    got = run_tactic(_tactic(QUANTIZE if op == "QuantizeLinear" else DEQUANTIZE), layer, weights, inputs)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    return got, want


def _quantize(*args, **kwargs):
    got, want = _run("QuantizeLinear", *args, **kwargs)
    np.testing.assert_array_equal(got, want)


def _dequantize(*args, **kwargs):
    got, want = _run("DequantizeLinear", *args, **kwargs)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-6, atol=0)


def test_supports():
    q, dq = _tactic(QUANTIZE), _tactic(DEQUANTIZE)
    assert q.supports(_layer("QuantizeLinear"), "int8") and q.supports(_layer("QuantizeLinear", False), "fp32")
    assert q.supports(_layer("QuantizeLinear", output_dtypes=["uint8"], precision=TensorProto.FLOAT), "int8")
    assert not q.supports(_layer("QuantizeLinear", output_dtypes=["float8_e4m3fn"]), "int8")
    assert not q.supports(_layer("QuantizeLinear", output_dtype=TensorProto.INT4), "int8")
    assert not q.supports(_layer("QuantizeLinear", block_size=32), "int8")
    assert not q.supports(_layer("QuantizeLinear", precision=TensorProto.FLOAT16), "int8")
    assert not q.supports(_layer("QuantizeLinear"), "bf16")
    assert not q.supports(_layer("DequantizeLinear"), "int8")
    assert dq.supports(_layer("DequantizeLinear", output_dtypes=["float16"]), "int8")
    assert dq.supports(_layer("DequantizeLinear", output_dtype=TensorProto.FLOAT16), "fp32")
    assert not dq.supports(_layer("DequantizeLinear", output_dtypes=["bfloat16"]), "int8")
    assert not dq.supports(_layer("DequantizeLinear", output_dtype=TensorProto.BFLOAT16), "int8")
    assert not dq.supports(_layer("DequantizeLinear", block_size=16), "int8")


def _specials(dtype):
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, np.finfo(dtype).max, -np.finfo(dtype).max,
                     np.finfo(dtype).tiny], dtype)


@gpu
@pytest.mark.parametrize("zero", [None, np.int8(0), np.int8(-3), np.uint8(128), np.uint8(3)],
                         ids=["none", "int8_0", "int8_-3", "uint8_128", "uint8_3"])
def test_quantize_ties_saturation_nan(cp, zero):
    # x / 0.5 = k / 2 exactly: every odd k is a .5 tie (half to even), |k / 2| up to 300 saturates
    ties = np.arange(-600, 601, dtype=np.float32) * np.float32(0.25)
    x = np.concatenate([ties, _specials(np.float32)]).reshape(1, -1)
    _quantize(x, np.float32(0.5), zero)


@gpu
@pytest.mark.parametrize("x_dtype,scale_dtype", [(np.float32, np.float32), (np.float16, np.float16)])
@pytest.mark.parametrize("size", [1208, 1209], ids=["four_a_thread", "one_a_thread"])
def test_quantize_per_tensor_forms(cp, x_dtype, scale_dtype, size):
    """A per-tensor layer of a multiple of 4 elements runs the four-a-thread kernel, any other the
    scalar one: ties, saturation and specials are equal to the oracle in both."""
    ties = np.arange(-600, 601, dtype=np.float32) * np.float32(0.25)
    x = np.concatenate([ties, _specials(np.float16)])[:size].astype(x_dtype).reshape(1, -1)
    _quantize(x, scale_dtype(0.5), np.int8(-3))
    _quantize(x, scale_dtype(0.0371), np.uint8(100))


@gpu
@pytest.mark.parametrize("zero", [np.int8(7), np.uint8(200)], ids=["int8", "uint8"])
def test_quantize_inexact_division(cp, zero):
    # a scale that is no power of two: the quotient rounds, so a non-IEEE division would show
    scale = np.float32(0.0173)
    near_ties = (np.arange(-300, 300, dtype=np.float32) + np.float32(0.5)) * scale
    x = np.concatenate([near_ties, RNG.standard_normal(5000).astype(np.float32) * 3]).reshape(10, -1)
    _quantize(x, scale, zero)


@gpu
@pytest.mark.parametrize("shape,axis", [((2, 5, 7, 9), 1), ((6, 33), 0), ((3, 4, 17), -1), ((4, 8, 3, 3), 0)])
@pytest.mark.parametrize("zero_dtype", [np.int8, np.uint8])
def test_quantize_per_axis(cp, shape, axis, zero_dtype):
    channels = shape[axis]
    scale = (RNG.random(channels) * 0.1 + 0.01).astype(np.float32)
    info = np.iinfo(zero_dtype)
    zero = RNG.integers(info.min // 2, info.max // 2, channels).astype(zero_dtype)
    x = (RNG.standard_normal(shape) * 8).astype(np.float32)
    x.flat[::11] = np.nan
    _quantize(x, scale, zero, axis=axis)
    _quantize(x, scale, zero_dtype(5), axis=axis)        # per-axis scale, one zero point


@gpu
def test_quantize_nhwc_per_axis(cp):
    # channels-last storage of an NCHW [2, 24, 5, 6] tensor; axis 1 keeps its ONNX meaning
    x = (RNG.standard_normal((2, 5, 6, 24)) * 4).astype(np.float32)
    scale = (RNG.random(24) * 0.05 + 0.01).astype(np.float32)
    zero = RNG.integers(0, 255, 24).astype(np.uint8)
    _quantize(x, scale, zero, layout="NHWC", axis=1)
    _quantize(x, np.float32(0.03), np.int8(-1), layout="NHWC")


@gpu
@pytest.mark.parametrize("x_dtype,scale_dtype,precision", [
    (np.float16, np.float32, 0), (np.float16, np.float16, 0), (np.float32, np.float16, 0),
    (np.float16, np.float16, TensorProto.FLOAT), (np.float32, np.float16, TensorProto.FLOAT)])
def test_quantize_float16(cp, x_dtype, scale_dtype, precision):
    # a float16 scale divides in float16 unless the precision attr says float32 (as the oracle does)
    ties = np.arange(-400, 401, dtype=np.float32) * np.float32(0.125)
    x = np.concatenate([ties, RNG.standard_normal(3000) * 20, _specials(np.float16)]).astype(x_dtype)
    attrs = {"precision": precision} if precision else {}
    _quantize(x, scale_dtype(0.25), np.int8(1), **attrs)
    _quantize(x, scale_dtype(0.0371), np.uint8(100), **attrs)


@gpu
def test_quantize_scale_as_activation_and_shapes(cp):
    _quantize(np.array(2.5, np.float32), np.float32(1.0), np.int8(0), constants=False)        # rank 0
    x = (RNG.standard_normal((5, 1 << 20)) * 50).astype(np.float32)         # more than the grid covers
    _quantize(x, np.float32(0.2), np.uint8(128), constants=False)
    _quantize(x, (RNG.random(5) + 0.1).astype(np.float32), np.zeros(5, np.int8), constants=False, axis=0)


@gpu
@pytest.mark.parametrize("x_dtype,zero", [(np.int8, None), (np.int8, np.int8(-5)), (np.uint8, np.uint8(128)),
                                          (np.uint8, None), (np.int32, np.int32(-7))])
def test_dequantize_per_tensor(cp, x_dtype, zero):
    info = np.iinfo(x_dtype)
    x = RNG.integers(info.min, info.max, (3, 1000), endpoint=True, dtype=np.int64)
    x[0, :2] = info.min, info.max
    _dequantize(x.astype(x_dtype), np.float32(0.0173), zero)


@gpu
def test_dequantize_int32_rounds_like_the_oracle(cp):
    # (x - zp) beyond 2^24 rounds once to float32, from the exact 64-bit difference
    x = np.array([2**31 - 1, -2**31, 2**24 + 1, -(2**24) - 3, 123456789], np.int32)
    _dequantize(x, np.float32(3.0e-5), np.int32(-2**31 + 5))
    _dequantize(x, np.float32(0.5), np.int32(2**30 + 3))


@gpu
@pytest.mark.parametrize("shape,axis,layout", [((2, 6, 5, 4), 1, ""), ((2, 5, 4, 6), 1, "NHWC"),
                                               ((8, 3, 3, 3), 0, ""), ((7, 40), -1, "")])
@pytest.mark.parametrize("x_dtype", [np.int8, np.uint8])
def test_dequantize_per_axis(cp, shape, axis, layout, x_dtype):
    channels = shape[3] if layout == "NHWC" else shape[axis]
    info = np.iinfo(x_dtype)
    x = RNG.integers(info.min, info.max, shape, endpoint=True).astype(x_dtype)
    scale = (RNG.random(channels) * 0.02 + 0.001).astype(np.float32)
    zero = RNG.integers(info.min, info.max, channels, endpoint=True).astype(x_dtype)
    _dequantize(x, scale, zero, layout=layout, axis=axis)
    _dequantize(x, scale, None, layout=layout, axis=axis, constants=False)


@gpu
def test_dequantize_float16_output(cp):
    x = RNG.integers(-128, 127, (4, 300), endpoint=True).astype(np.int8)
    _dequantize(x, np.float32(0.0173), np.int8(3), output_dtype=TensorProto.FLOAT16)   # attr picks float16
    _dequantize(x, np.float16(0.0173), np.int8(3))                                     # a float16 scale does
    scale = np.array([0.01, 1.0, 300.0, 1000.0], np.float16)                  # 130 * 1000 is inf in float16
    _dequantize(x, scale, np.int8(-3), axis=0)


@gpu
def test_quantize_dequantize_are_capturable(cp):
    from graph_checks import assert_capturable
    x = (RNG.standard_normal((2, 8, 5, 5)) * 3).astype(np.float32)
    scale = (RNG.random(8) * 0.05 + 0.01).astype(np.float32)
    layer = _layer("QuantizeLinear", zero_point=False, axis=1)
    assert_capturable(_tactic(QUANTIZE), layer, {"scale": scale}, [x, scale])
    q = RNG.integers(-128, 127, (2, 8, 5, 5)).astype(np.int8)
    zero = RNG.integers(-10, 10, 8).astype(np.int8)
    layer = _layer("DequantizeLinear", axis=1)
    assert_capturable(_tactic(DEQUANTIZE), layer, {"scale": scale, "zero": zero}, [q, scale, zero])
