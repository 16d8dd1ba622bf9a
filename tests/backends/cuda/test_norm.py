"""kernels.softmax, kernels.layer_norm and cupy.batch_norm against the CPU oracle."""
import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS

gpu = pytest.mark.gpu
RNG = np.random.default_rng(0)


def _tactic(name):
    return next(t for t in TACTICS if t.name == name)


def _dtype(precision):
    return np.float16 if precision == "fp16" else np.float32


def test_norm_supports():
    softmax, ln, bn = _tactic("kernels.softmax"), _tactic("kernels.layer_norm"), _tactic("cupy.batch_norm")
    assert softmax.supports(Layer("s", "Softmax", ["x"], ["y"], opset=13), "fp16")
    assert not softmax.supports(Layer("s", "Softmax", ["x"], ["y"], opset=13, layout="NHWC"), "fp16")
    assert ln.supports(Layer("l", "FusedLayerNorm", ["x", "g", "b"], ["y"], domain="workbench"), "fp32")
    assert ln.supports(Layer("l", "LayerNormalization", ["x", "g", "b"], ["y"], opset=17), "fp32")
    assert not ln.supports(Layer("l", "LayerNormalization", ["x", "g"], ["y", "mean"], opset=17), "fp32")
    assert bn.supports(Layer("b", "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], opset=15, layout="NHWC"), "fp16")
    assert not bn.supports(Layer("b", "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], {"training_mode": 1},
                                 opset=15), "fp16")


@gpu
@pytest.mark.parametrize("shape,axis,opset", [((4, 12, 128, 128), -1, 13), ((3, 5000), -1, 13), ((2, 7, 33), 1, 13),
                                              ((2, 7, 33), 0, 13), ((4, 6, 5), 1, 11), ((6, 3000), 1, 11)])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_softmax(cp, shape, axis, opset, precision):
    x = (RNG.standard_normal(shape) * 3).astype(_dtype(precision))
    layer = Layer("s", "Softmax", ["x"], ["y"], {"axis": axis}, opset=opset, precision=precision)
    assert_matches_oracle(_tactic("kernels.softmax"), layer, {}, [x])


@gpu
@pytest.mark.parametrize("op,domain", [("LayerNormalization", ""), ("FusedLayerNorm", "workbench")])
@pytest.mark.parametrize("shape,axis", [((4, 33, 768), -1), ((3, 5, 40), 1), ((2, 3000), -1),
                                        ((7, 36), -1), ((6, 2048), -1), ((9, 1028), -1)])   # warp-per-row limits
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_layer_norm(cp, op, domain, shape, axis, precision):
    dtype = _dtype(precision)
    x = (RNG.standard_normal(shape) * 2 + 1).astype(dtype)
    norm_shape = shape[axis:] if axis >= 0 else shape[axis:]
    scale = RNG.standard_normal(norm_shape).astype(dtype)
    bias = RNG.standard_normal(norm_shape).astype(dtype)
    layer = Layer("ln", op, ["x", "scale", "bias"], ["y"], {"axis": axis, "epsilon": 1e-5}, domain=domain, opset=17,
                  precision=precision)
    assert_matches_oracle(_tactic("kernels.layer_norm"), layer, {"scale": scale, "bias": bias}, [x, scale, bias])


@gpu
def test_layer_norm_without_bias(cp):
    x = RNG.standard_normal((5, 64)).astype(np.float32)
    scale = RNG.standard_normal((64,)).astype(np.float32)
    layer = Layer("ln", "LayerNormalization", ["x", "scale"], ["y"], {"axis": -1}, opset=17)
    assert_matches_oracle(_tactic("kernels.layer_norm"), layer, {"scale": scale}, [x, scale])


@gpu
@pytest.mark.parametrize("layout", ["", "NHWC"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_batch_norm(cp, layout, precision):
    dtype = _dtype(precision)
    c = 24
    x = RNG.standard_normal((2, 5, 6, c) if layout else (2, c, 5, 6)).astype(dtype)
    params = [RNG.standard_normal(c).astype(dtype), RNG.standard_normal(c).astype(dtype),
              RNG.standard_normal(c).astype(dtype), (np.abs(RNG.standard_normal(c)) + 0.5).astype(dtype)]
    names = ["scale", "bias", "mean", "var"]
    layer = Layer("bn", "BatchNormalization", ["x"] + names, ["y"], {"epsilon": 1e-3}, opset=15, precision=precision,
                  layout=layout)
    assert_matches_oracle(_tactic("cupy.batch_norm"), layer, dict(zip(names, params)), [x] + params)


@gpu
def test_norm_tactics_are_capturable(cp):
    from graph_checks import assert_capturable
    x = RNG.standard_normal((4, 16, 768)).astype(np.float16)
    assert_capturable(_tactic("kernels.softmax"), Layer("s", "Softmax", ["x"], ["y"], {"axis": -1}, opset=13,
                                                        precision="fp16"), {}, [x])
    scale, bias = np.ones(768, np.float16), np.zeros(768, np.float16)
    layer = Layer("ln", "FusedLayerNorm", ["x", "g", "b"], ["y"], {"axis": -1}, domain="workbench", precision="fp16")
    assert_capturable(_tactic("kernels.layer_norm"), layer, {"g": scale, "b": bias}, [x, scale, bias])
