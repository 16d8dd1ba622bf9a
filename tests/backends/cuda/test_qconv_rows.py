"""kernels.qconv_rows_* (kernels/qconv_rows.cu: 64-channel stride-1 3x3 FusedQConv from input rows staged
in shared memory) against the CPU kernel, the exact emulation: every int8 output must be equal. Tiles
cut by the map's edges, several 64-channel output blocks, asymmetric and no padding, residual / bias /
each activation, persistent blocks taking many tiles, graph capture, and the layers it leaves."""
from __future__ import annotations

import numpy as np
import pytest
from gemm_cases import assert_graph_capturable
from gpu_checks import cp  # noqa: F401
from test_qconv_igemm import assert_equal_to_emulation, case

pytestmark = pytest.mark.gpu

_NAMES = ("8x28", "4x32")                        # kernels.qconv_rows_<tile>, in TILES order
_PAD1 = {"pads": [1, 1, 1, 1]}


def _tactics():
    from workbench.backends.cuda.tactics.qconv_rows import TILES, QConvRows
    return [QConvRows(t) for t in TILES]


@pytest.fixture(params=range(len(_NAMES)), ids=lambda i: _NAMES[i])
def tactic(request):
    return _tactics()[request.param]


def test_registered():
    from workbench.backends.cuda import tactics  # noqa: F401  (registers them)
    from workbench.backends.cuda.registry import TACTICS
    assert [t.name for t in TACTICS if t.name.startswith("kernels.qconv_rows")] == \
        [f"kernels.qconv_rows_{name}" for name in _NAMES]


@pytest.mark.parametrize("n,h,w,k,attrs,residual", [
    (2, 11, 9, 64, _PAD1, False),                     # one partial tile a map
    (1, 20, 61, 128, _PAD1, True),                    # tiles cut in both directions, two output blocks
    (3, 56, 56, 64, _PAD1, False),                    # ResNet's layer1 conv2 on three images
    (2, 9, 12, 64, {"pads": [0, 1, 2, 1]}, True),     # asymmetric padding
    (1, 7, 7, 64, {}, False),                         # no padding
])
def test_matches_the_emulation(cp, tactic, n, h, w, k, attrs, residual):
    layer, weights, inputs = case(n, h, w, 64, k, attrs=attrs, kernel=(3, 3), residual=residual, seed=h * w)
    assert tactic.supports(layer, "int8")
    assert_equal_to_emulation(tactic, layer, weights, inputs)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bias,activation", [(False, ""), (True, "LeakyRelu"), (True, "Clip")])
def test_residual_bias_activation(cp, tactic, residual, bias, activation):
    layer, weights, inputs = case(2, 10, 13, 64, 64, attrs=_PAD1, kernel=(3, 3), residual=residual, bias=bias,
                                  activation=activation)
    layer.attrs["activation_params"] = {"LeakyRelu": [0.1], "Clip": [-20.5, 30.25]}.get(activation, [])
    assert_equal_to_emulation(tactic, layer, weights, inputs, spread=49)


@pytest.mark.parametrize("residual", [False, True])
def test_few_persistent_blocks_take_many_tiles(cp, tactic, monkeypatch, residual):
    """Two blocks an output block for dozens of tiles: the staged input alternates between its two
    buffers, and the next tile's residual is copied after this one is stored."""
    from workbench.backends.cuda.tactics import qconv_rows
    monkeypatch.setattr(qconv_rows, "resident_blocks", lambda *args: 4)
    layer, weights, inputs = case(3, 30, 40, 64, 128, attrs=_PAD1, kernel=(3, 3), residual=residual, seed=7)
    assert_equal_to_emulation(tactic, layer, weights, inputs)


def test_graph_capturable(cp):
    layer, weights, inputs = case(2, 9, 7, 64, 64, attrs=_PAD1, kernel=(3, 3), residual=True)
    assert_graph_capturable(_tactics()[0], layer, weights, inputs, layer.output_shapes[0], np.int8)


@pytest.mark.parametrize("c,k", [(128, 64), (64, 96), (32, 64)])
def test_prepare_refuses_channel_counts(cp, c, k):
    layer, weights, _ = case(1, 6, 6, c, k, attrs=_PAD1, kernel=(3, 3))
    assert _tactics()[0].supports(layer, "int8")        # channel counts are the weight's: prepare checks them
    with pytest.raises(ValueError, match="qconv_test.*64 input channels"):
        _tactics()[0].prepare(layer, weights)


@pytest.mark.parametrize("kernel,attrs", [((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}), ((1, 1), {}),
                                          ((5, 5), {"pads": [2, 2, 2, 2]}), ((3, 3), {"group": 2}),
                                          ((3, 3), {"dilations": [2, 2]}), ((3, 3), {"auto_pad": "SAME_UPPER"})])
def test_leaves_other_layers(kernel, attrs):
    layer, _, _ = case(2, 9, 9, 64, 64, attrs=attrs, kernel=kernel)
    assert not any(t.supports(layer, "int8") for t in _tactics())
