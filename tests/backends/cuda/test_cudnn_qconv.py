"""cudnn.qconv_int8 and cudnn.qconv_fp16_exact (workbench::FusedQConv on cuDNN) against the CPU
kernel, the exact emulation: int8 outputs may differ by one step where the float epilogue rounds a
value sitting on a .5 boundary differently, nowhere more; float outputs agree to float32 rounding."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conv_cases import SHAPES
from gpu_checks import cp, run_tactic  # noqa: F401

from workbench.backends.base import Layer
from workbench.backends.cpu.ops.nn import window_geometry
from workbench.builder.oracle import oracle_outputs

pytestmark = pytest.mark.gpu
cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed: no cuDNN tactic to test")

CASES = ["3x3_pad1", "3x3_stride2", "1x1", "1x1_stride2", "asymmetric_pads", "dilation2", "resnet_3x3", "valid"]
OUTPUTS = {"int8": onnx.TensorProto.INT8, "float32": onnx.TensorProto.FLOAT, "float16": onnx.TensorProto.FLOAT16}


def qconv_case(shape_id: str, *, output="int8", residual=False, activation="Relu", bias=True, seed=0):
    """A FusedQConv layer as the builder makes it (NHWC), real-looking scales, int8 operands."""
    n, c, h, w, k, kernel, attrs = SHAPES[shape_id]
    rng = np.random.default_rng(seed)
    fan_in = c * kernel[0] * kernel[1]
    weights = {"w": rng.integers(-127, 128, (k, c) + tuple(kernel)).astype(np.int8),
               # s_x * s_w / s_y: an accumulator of typical size lands around +-60 on the output grid
               "m": (rng.uniform(0.5, 1.5, k) / (np.sqrt(fan_in) * 127 * 40 / 60)).astype(np.float32)}
    if bias:
        weights["b"] = rng.uniform(-20, 20, k).astype(np.float32)
    out_shape = (n,) + window_geometry((h, w), kernel, attrs).out + (k,)
    host = {"x": rng.integers(0, 128, (n, h, w, c)).astype(np.int8), "w": weights["w"], "m": weights["m"],
            "b": weights.get("b"), "z": rng.integers(-127, 128, out_shape).astype(np.int8)}
    inputs = ["x", "w", "m", "b" if bias else "", "z" if residual else ""]
    while not inputs[-1]:
        inputs.pop()
    layer_attrs = dict(attrs, kernel_shape=list(kernel), activation=activation, activation_params=[],
                       residual_scale=0.37, output_dtype=OUTPUTS[output])
    layer = Layer(name="qconv_test", op="FusedQConv", domain="workbench", inputs=inputs, outputs=["y"],
                  attrs=layer_attrs, opset=1, precision="int8", layout="NHWC",
                  output_shapes=[out_shape], output_dtypes=[output])
    return layer, weights, [host[name] if name else None for name in inputs]


def _tactic(compute):
    from workbench.backends.cuda.tactics.cudnn_qconv import CudnnQConv
    return CudnnQConv(compute)


def _assert_close_to_emulation(tactic, layer, weights, inputs):
    want = oracle_outputs(layer, weights, inputs)[0]
    got = run_tactic(tactic, layer, weights, inputs)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype == np.int8:
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        assert diff.max() <= 1, f"{tactic.name}: off by {diff.max()} somewhere"
        assert np.mean(diff != 0) < 1e-3, f"{tactic.name}: {np.mean(diff != 0):.2%} of values differ"
        assert np.ptp(want.astype(np.int32)) > 50, "the case should exercise the whole grid"
    else:
        tol = 1e-3 if want.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol * 10)


def test_registered():
    from workbench.backends.cuda.registry import TACTICS
    from workbench.backends.cuda.tactics import cudnn_qconv  # noqa: F401
    names = [t.name for t in TACTICS]
    assert "cudnn.qconv_int8" in names and "cudnn.qconv_fp16_exact" in names


FEW_CHANNEL_CASES = ["7x7_stride2_c3", "odd_channels", "valid", "asymmetric_pads"]


@pytest.mark.parametrize("shape_id", CASES)
def test_int8_output_matches_the_emulation(cp, shape_id):
    layer, weights, inputs = qconv_case(shape_id)
    tactic = _tactic("int8")
    assert tactic.supports(layer, "int8")
    _assert_close_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("shape_id", FEW_CHANNEL_CASES)
def test_fp16_exact_matches_the_emulation(cp, shape_id):
    layer, weights, inputs = qconv_case(shape_id)
    _assert_close_to_emulation(_tactic("fp16_exact"), layer, weights, inputs)


def test_fp16_exact_is_for_few_channels_only(cp):
    from workbench.backends.cuda.tactics.cudnn_conv import CudnnUnsupportedError
    layer, weights, _ = qconv_case("resnet_3x3")
    with pytest.raises(CudnnUnsupportedError, match="fewer than 16"):
        _tactic("fp16_exact").prepare(layer, weights)


@pytest.mark.parametrize("compute,residual,activation", [("int8", True, "Relu"), ("int8", True, ""), ("int8", False, ""),
                                                         ("fp16_exact", False, ""), ("fp16_exact", False, "Relu")])
@pytest.mark.parametrize("output", ["int8", "float32", "float16"])
def test_residual_and_float_outputs(cp, compute, output, residual, activation):
    shape_id = "resnet_3x3" if compute == "int8" else "odd_channels"
    layer, weights, inputs = qconv_case(shape_id, output=output, residual=residual, activation=activation)
    _assert_close_to_emulation(_tactic(compute), layer, weights, inputs)


def test_fp16_exact_takes_no_residual(cp):
    from workbench.backends.cuda.tactics.cudnn_conv import CudnnUnsupportedError
    layer, weights, _ = qconv_case("odd_channels", residual=True)
    with pytest.raises(CudnnUnsupportedError, match="no residual"):
        _tactic("fp16_exact").prepare(layer, weights)


def test_three_channel_stem_runs_on_fp16_exact(cp):
    """C=3 (ResNet's stem): int8 kernels need C % 4 == 0 and are refused; fp16_exact is exact here."""
    from workbench.backends.cuda.tactics.cudnn_conv import CudnnUnsupportedError
    layer, weights, inputs = qconv_case("7x7_stride2_c3")
    with pytest.raises(CudnnUnsupportedError, match="multiple of 4"):
        _tactic("int8").prepare(layer, weights)
    _assert_close_to_emulation(_tactic("fp16_exact"), layer, weights, inputs)


def test_fp16_exact_refuses_sums_that_could_round(cp):
    from workbench.backends.cuda.tactics.cudnn_conv import CudnnUnsupportedError
    layer, weights, inputs = qconv_case("odd_channels")
    weights["w"] = np.zeros((8, 8, 13, 13), np.int8)          # C*R*S = 1352 > 1040
    weights["m"], weights["b"] = np.ones(8, np.float32), np.zeros(8, np.float32)   # K = 8 like the weight
    with pytest.raises(CudnnUnsupportedError, match="would round"):
        _tactic("fp16_exact").prepare(layer, weights)


def test_float_layers_are_not_taken():
    """FusedQConv is int8-only and float convolutions are not FusedQConv's."""
    layer, _, _ = qconv_case("1x1")
    assert not _tactic("int8").supports(layer, "fp16")
    float_conv = Layer(name="c", op="FusedConv", domain="workbench", inputs=["x", "w"], outputs=["y"],
                       attrs={"kernel_shape": [1, 1]}, opset=1, precision="fp16", layout="NHWC")
    assert not _tactic("int8").supports(float_conv, "int8")
