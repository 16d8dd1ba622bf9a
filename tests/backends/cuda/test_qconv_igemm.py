"""kernels.qconv1x1_* and kernels.qconv_igemm_* (kernels/qconv_igemm.cu: workbench::FusedQConv as an
implicit GEMM on the int8 tensor cores) against the CPU kernel, the exact emulation: the kernel does
the same float32 operations in the same order, so every int8 output must be equal. Partial M tiles,
one and several 64-channel ring steps, strides, taps with symmetric and asymmetric padding, residual /
bias / each activation, graph capture, and the layers the tactics refuse."""
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
    from workbench.backends.cuda.tactics.qconv_igemm import CONFIGS_1X1, QConv1x1
    return [QConv1x1(c) for c in CONFIGS_1X1]


def _tap_tactics():
    from workbench.backends.cuda.tactics.qconv_igemm import CONFIGS_TAPS, QConvTaps
    return [QConvTaps(c) for c in CONFIGS_TAPS]


_TILES = ("128x128", "128x128_s3", "128x64")        # kernels.qconv1x1_<tile>, in CONFIGS_1X1 order
_TAP_TILES = ("64x128", "128x128", "128x64")        # kernels.qconv_igemm_<tile>, in CONFIGS_TAPS order


@pytest.fixture(params=range(len(_TILES)), ids=lambda i: _TILES[i])
def tactic(request):
    return _tactics()[request.param]


def case(n, h, w, c, k, attrs=None, kernel=(1, 1), **kw):
    """qconv_case on a shape of our own (registered in SHAPES only for the call)."""
    with mock.patch.dict(SHAPES, {"qconv1x1": (n, c, h, w, k, kernel, attrs or {})}):
        return qconv_case("qconv1x1", **kw)


def assert_equal_to_emulation(tactic, layer, weights, inputs, spread=50):
    want = oracle_outputs(layer, weights, inputs)[0]
    got = run_tactic(tactic, layer, weights, inputs)[0]
    assert got.dtype == want.dtype == np.int8 and got.shape == want.shape
    assert np.ptp(want.astype(np.int32)) >= spread, "the case should exercise the whole grid"
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{tactic.name}: {len(bad)} of {want.size} outputs differ, first at {tuple(bad[0])}: "
                           f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]}")


def test_registered():
    from workbench.backends.cuda import tactics  # noqa: F401  (registers them)
    from workbench.backends.cuda.registry import TACTICS
    names = {t.name for t in TACTICS}
    assert {t.name for t in _tactics()} <= names
    assert [t.name for t in _tactics()] == [f"kernels.qconv1x1_{tile}" for tile in _TILES]
    assert [t.name for t in _tap_tactics()] == [f"kernels.qconv_igemm_{tile}" for tile in _TAP_TILES]


@pytest.mark.parametrize("c", [64, 128, 256])
@pytest.mark.parametrize("k", [256, 512])
def test_channels_and_partial_tiles(cp, tactic, c, k):
    """M = 3*17*13 = 663 rows: no tile size divides it; C = 128 and 256 run two and four steps through the ring."""
    layer, weights, inputs = case(3, 17, 13, c, k, seed=c + k)
    assert tactic.supports(layer, "int8")
    assert_equal_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("c,stride", [(64, (1, 1)), (128, (1, 1)), (128, (2, 2)), (256, (1, 1))])
def test_few_persistent_blocks_take_many_tiles(cp, tactic, monkeypatch, c, stride):
    """Few blocks for 26..104 tiles (3 resident, rounded up to a multiple of the 4 or 8 output-channel
    tiles so each block keeps one tile's weights): each block's tiles stream through one ring, the
    residual and output tiles alternate; C = 64 (one step a tile), 128 (two) and 256 (four)."""
    from workbench.backends.cuda.tactics import qconv_igemm
    monkeypatch.setattr(qconv_igemm, "resident_blocks", lambda *args: 3)
    layer, weights, inputs = case(4, 20, 21, c, 512, attrs={"strides": list(stride)}, residual=True, seed=c)
    assert_equal_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("c,residual", [(512, True), (512, False)])
def test_prepare_leaves_wide_layers_to_cudnn(cp, c, residual):
    layer, weights, _ = case(1, 4, 4, c, 128, residual=residual)
    with pytest.raises(ValueError, match="qconv_test.*cuDNN.*faster"):
        _tactics()[0].prepare(layer, weights)


@pytest.mark.parametrize("stride", [(2, 2), (2, 1)])
def test_strided(cp, tactic, stride):
    layer, weights, inputs = case(2, 15, 10, 128, 256, attrs={"strides": list(stride)}, residual=True, seed=3)
    assert tactic.supports(layer, "int8")
    assert_equal_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bias,activation", [(True, "Relu"), (False, ""), (True, ""), (True, "LeakyRelu")])
def test_residual_bias_activation(cp, tactic, residual, bias, activation):
    layer, weights, inputs = case(2, 9, 7, 64, 256, residual=residual, bias=bias, activation=activation)
    if activation == "LeakyRelu":
        layer.attrs["activation_params"] = [0.1]
    assert_equal_to_emulation(tactic, layer, weights, inputs)


def test_clip_and_tiny_batch(cp, tactic):
    layer, weights, inputs = case(1, 1, 3, 64, 256, activation="Clip", residual=True)
    layer.attrs["activation_params"] = [-20.5, 30.25]
    assert_equal_to_emulation(tactic, layer, weights, inputs, spread=49)


def test_graph_capturable(cp, tactic):
    layer, weights, inputs = case(2, 9, 7, 64, 256, residual=True)
    assert_graph_capturable(tactic, layer, weights, inputs, layer.output_shapes[0], np.int8)


def test_float_residual_is_refused(cp):
    tactic = _tactics()[0]
    layer, weights, inputs = case(2, 9, 7, 64, 128, residual=True)
    inputs[4] = inputs[4].astype(np.float16)
    with pytest.raises(ValueError, match="qconv_test.*residual.*expected int8"):
        run_tactic(tactic, layer, weights, inputs)


@pytest.mark.parametrize("what", ["m", "b"])
def test_prepare_refuses_non_finite_parameters(cp, what):
    """The kernel's clamp-then-round has no NaN path, so parameters that could make one are refused."""
    layer, weights, _ = case(1, 4, 4, 64, 128)
    weights[what] = weights[what].copy()
    weights[what][3] = np.inf
    with pytest.raises(ValueError, match=f"qconv_test.*{'multiplier' if what == 'm' else 'bias'}.*not finite"):
        _tactics()[0].prepare(layer, weights)


def test_prepare_refuses_channel_counts(cp):
    tactic = _tactics()[0]
    assert tactic.bn == 128
    for c, k, why in ((32, 128, "multiple of"), (64, 192, "multiple of"), (320, 128, "cuDNN.*faster")):
        layer, weights, _ = case(1, 4, 4, c, k)
        assert tactic.supports(layer, "int8")            # channel counts are the weight's: prepare checks them
        with pytest.raises(ValueError, match=f"qconv_test.*{why}"):
            tactic.prepare(layer, weights)


@pytest.mark.parametrize("kernel,attrs", [((3, 3), {"pads": [1, 1, 1, 1]}), ((1, 1), {"pads": [1, 1, 1, 1]}),
                                          ((1, 1), {"group": 2}), ((1, 1), {"dilations": [2, 2]})])
def test_supports_only_unpadded_1x1(kernel, attrs):
    layer, _, _ = case(2, 9, 9, 64, 128, attrs=attrs, kernel=kernel)
    assert not any(t.supports(layer, "int8") for t in _tactics())


def test_supports_int8_output_and_grid_activations_only():
    layer, _, _ = case(2, 9, 9, 64, 128)
    assert all(t.supports(layer, "int8") for t in _tactics())
    assert not any(t.supports(layer, "fp16") for t in _tactics())
    float_out, _, _ = case(2, 9, 9, 64, 128, output="float32")
    assert not any(t.supports(float_out, "int8") for t in _tactics())
    layer.attrs["activation"] = "Sigmoid"
    assert not any(t.supports(layer, "int8") for t in _tactics())


@pytest.mark.parametrize("index", range(len(_TAP_TILES)), ids=_TAP_TILES)
@pytest.mark.parametrize("n,h,w,c,kernel,attrs,residual", [
    (2, 11, 9, 64, (3, 3), {"pads": [1, 1, 1, 1]}, False),                    # ResNet's conv2, partial tiles
    (3, 13, 10, 128, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, True),  # two steps a tap, stride 2
    (2, 9, 12, 64, (5, 3), {"strides": [1, 2], "pads": [2, 1, 0, 1]}, True),   # asymmetric window and pads
    (1, 7, 7, 64, (3, 3), {}, False),                                           # no padding
])
def test_taps_match_the_emulation(cp, index, n, h, w, c, kernel, attrs, residual):
    tactic = _tap_tactics()[index]
    layer, weights, inputs = case(n, h, w, c, 128, attrs=attrs, kernel=kernel, residual=residual, seed=h * w)
    assert tactic.supports(layer, "int8")
    assert_equal_to_emulation(tactic, layer, weights, inputs)


def test_taps_graph_capturable(cp):
    layer, weights, inputs = case(2, 9, 7, 64, 128, attrs={"pads": [1, 1, 1, 1]}, kernel=(3, 3))
    assert_graph_capturable(_tap_tactics()[0], layer, weights, inputs, layer.output_shapes[0], np.int8)


@pytest.mark.parametrize("kernel,attrs", [((1, 1), {}), ((3, 3), {"group": 2}), ((3, 3), {"dilations": [2, 2]}),
                                          ((3, 3), {"auto_pad": "SAME_UPPER"})])
def test_taps_tactics_leave_other_layers(kernel, attrs):
    layer, _, _ = case(2, 9, 9, 64, 128, attrs=attrs, kernel=kernel)
    assert not any(t.supports(layer, "int8") for t in _tap_tactics())
