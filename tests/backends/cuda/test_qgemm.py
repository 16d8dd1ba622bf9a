"""kernels.qgemm_1x1_* (kernels/qgemm.cu: 1x1 workbench::FusedQConv as an INT8 tensor-core GEMM)
against the CPU kernel, the exact emulation: int8 outputs may differ by one step where the float
epilogue lands on a .5 boundary, nowhere more; float outputs agree to float32 rounding. Partial M
tiles, C and K of 16..256 (one and several BK chunks, partial N tiles), each residual and output
dtype, bias, activation; graph capture; and the layers the tactic refuses."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from conv_cases import SHAPES
from gemm_cases import assert_graph_capturable
from gpu_checks import cp, run_tactic  # noqa: F401
from test_cudnn_qconv import qconv_case

from workbench.builder.oracle import oracle_outputs

pytestmark = pytest.mark.gpu


def _tactics():
    from workbench.backends.cuda.tactics.qgemm import CONFIGS, QGemm1x1
    return [QGemm1x1(c) for c in CONFIGS]


@pytest.fixture(params=range(3), ids=lambda i: _tactics()[i].name.rsplit("_", 1)[1])
def tactic(request):
    return _tactics()[request.param]


def _case(n, h, w, c, k, attrs=None, kernel=(1, 1), residual_dtype=None, **kw):
    """qconv_case on a shape of our own (registered in SHAPES only for the call); the residual
    converted to `residual_dtype` (int8 values, exact in fp16/fp32)."""
    with mock.patch.dict(SHAPES, {"qgemm": (n, c, h, w, k, kernel, attrs or {})}):
        layer, weights, inputs = qconv_case("qgemm", residual=residual_dtype is not None, **kw)
    if residual_dtype is not None:
        inputs[4] = inputs[4].astype(residual_dtype)
    return layer, weights, inputs


def _assert_close_to_emulation(tactic, layer, weights, inputs):
    want = oracle_outputs(layer, weights, inputs)[0]
    got = run_tactic(tactic, layer, weights, inputs)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype == np.int8:
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        assert diff.max() <= 1, f"{tactic.name}: off by {diff.max()} somewhere"
        assert np.mean(diff != 0) < 1e-3, f"{tactic.name}: {np.mean(diff != 0):.2%} of values differ"
    else:
        tol = 1e-3 if want.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol * 10)


def test_registered():
    from workbench.backends.cuda.registry import TACTICS
    from workbench.backends.cuda.tactics import qgemm  # noqa: F401
    names = {t.name for t in TACTICS}
    assert {"kernels.qgemm_1x1_128x128", "kernels.qgemm_1x1_128x64", "kernels.qgemm_1x1_64x128"} <= names


@pytest.mark.parametrize("c", [16, 64, 256])
@pytest.mark.parametrize("k", [16, 64, 256])
def test_channels_and_partial_tiles(cp, tactic, c, k):
    """M = 3*17*13 = 663 rows: no tile size divides it; C = 256 runs four BK chunks through the ring."""
    layer, weights, inputs = _case(3, 17, 13, c, k, seed=c + k)
    assert tactic.supports(layer, "int8")
    _assert_close_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("output", ["int8", "float16", "float32"])
@pytest.mark.parametrize("residual", [None, np.int8])
@pytest.mark.parametrize("bias,activation", [(True, "Relu"), (False, ""), (True, "")])
def test_residual_output_bias_activation(cp, tactic, output, residual, bias, activation):
    layer, weights, inputs = _case(2, 9, 7, 64, 80, output=output, residual_dtype=residual, bias=bias,
                                   activation=activation)
    _assert_close_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("residual", [np.float16, np.float32])
def test_float_residuals_are_refused(cp, tactic, residual):
    layer, weights, inputs = _case(2, 9, 7, 64, 80, residual_dtype=residual)
    with pytest.raises(ValueError, match="expected int8"):
        run_tactic(tactic, layer, weights, inputs)


def test_clip_and_tiny_batch(cp, tactic):
    layer, weights, inputs = _case(1, 1, 3, 32, 48, activation="Clip")
    layer.attrs["activation_params"] = [-20.0, 30.0]
    _assert_close_to_emulation(tactic, layer, weights, inputs)


def test_graph_capturable(cp, tactic):
    layer, weights, inputs = _case(2, 9, 7, 64, 64, residual_dtype=np.int8)
    assert_graph_capturable(tactic, layer, weights, inputs, layer.output_shapes[0], np.int8)


def test_prepare_refuses_channels_not_multiple_of_16(cp):
    tactic = _tactics()[0]
    for c, k in ((24, 64), (64, 40)):
        layer, weights, _ = _case(1, 4, 4, c, k)
        assert tactic.supports(layer, "int8")            # channel counts are the weight's: prepare checks them
        with pytest.raises(ValueError, match="qconv_test.*multiple of 16"):
            tactic.prepare(layer, weights)


@pytest.mark.parametrize("kernel,attrs", [((3, 3), {"pads": [1, 1, 1, 1]}), ((1, 1), {"strides": [2, 2]}),
                                          ((1, 1), {"pads": [1, 1, 1, 1]}), ((1, 1), {"group": 2})])
def test_supports_only_plain_1x1(kernel, attrs):
    layer, _, _ = _case(2, 9, 9, 32, 32, attrs=attrs, kernel=kernel)
    assert not any(t.supports(layer, "int8") for t in _tactics())


def test_supports_1x1_int8_only():
    layer, _, _ = _case(2, 9, 9, 32, 32)
    assert all(t.supports(layer, "int8") for t in _tactics())
    assert not any(t.supports(layer, "fp16") for t in _tactics())
    layer.attrs["activation"] = "Sigmoid"                # not exact in float32: left to cuDNN
    assert not any(t.supports(layer, "int8") for t in _tactics())
