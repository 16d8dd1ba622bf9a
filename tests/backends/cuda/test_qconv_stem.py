"""kernels.qconv_stem (kernels/qconv_stem.cu: a 7x7, 3-channel FusedQConv stem on the int8 tensor cores) against the CPU
kernel, the exact emulation: every int8 output must be equal. Strides, symmetric and asymmetric
padding, images wider than one block, each activation, bias or none, graph capture, refusals."""
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


def _tactic():
    from workbench.backends.cuda.tactics.qconv_stem import QConvStem
    return QConvStem()


def _case(n, h, w, attrs, c=3, k=64, kernel=(7, 7), **kw):
    with mock.patch.dict(SHAPES, {"stem": (n, c, h, w, k, kernel, attrs)}):
        return qconv_case("stem", **kw)


def _assert_equal_to_emulation(layer, weights, inputs, spread=50):
    want = oracle_outputs(layer, weights, inputs)[0]
    got = run_tactic(_tactic(), layer, weights, inputs)[0]
    assert got.dtype == want.dtype == np.int8 and got.shape == want.shape
    assert np.ptp(want.astype(np.int32)) >= spread, "the case should exercise the whole grid"
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} of {want.size} outputs differ, first at {tuple(bad[0])}"


@pytest.mark.parametrize("h,w,attrs", [
    (23, 23, {"strides": [2, 2], "pads": [3, 3, 3, 3]}),          # ResNet's stem, odd size
    (20, 300, {"strides": [2, 2], "pads": [3, 3, 3, 3]}),         # 150 output columns: two blocks a row
    (11, 9, {"strides": [1, 1], "pads": [3, 3, 3, 3]}),
    (16, 17, {"strides": [2, 1], "pads": [3, 2, 1, 0]}),          # asymmetric padding
    (9, 9, {}),                                                    # no padding
])
def test_matches_the_emulation(cp, h, w, attrs):
    layer, weights, inputs = _case(2, h, w, attrs, seed=h + w)
    assert _tactic().supports(layer, "int8")
    _assert_equal_to_emulation(layer, weights, inputs)


@pytest.mark.parametrize("bias,activation", [(False, ""), (True, ""), (True, "LeakyRelu"), (True, "Clip")])
def test_bias_and_activations(cp, bias, activation):
    layer, weights, inputs = _case(1, 15, 13, {"strides": [2, 2], "pads": [3, 3, 3, 3]}, bias=bias,
                                   activation=activation)
    if activation:
        layer.attrs["activation_params"] = [0.1] if activation == "LeakyRelu" else [-20.5, 30.25]
    _assert_equal_to_emulation(layer, weights, inputs, spread=49)


def test_graph_capturable(cp):
    layer, weights, inputs = _case(2, 15, 13, {"strides": [2, 2], "pads": [3, 3, 3, 3]})
    assert_graph_capturable(_tactic(), layer, weights, inputs, layer.output_shapes[0], np.int8)


def test_refusals():
    residual, _, _ = _case(1, 9, 9, {}, residual=True)
    float_out, _, _ = _case(1, 9, 9, {}, output="float32")
    assert not _tactic().supports(residual, "int8") and not _tactic().supports(float_out, "int8")
    assert not _tactic().supports(_case(1, 9, 9, {})[0], "fp16")


@pytest.mark.parametrize("c,k,kernel", [(4, 64, (7, 7)), (3, 32, (7, 7)), (3, 64, (3, 3))])
def test_prepare_refuses_other_shapes(cp, c, k, kernel):
    layer, weights, _ = _case(1, 9, 9, {}, c=c, k=k, kernel=kernel)
    with pytest.raises(ValueError, match="qconv_test.*compiled for"):
        _tactic().prepare(layer, weights)
