"""fallback.host against the CPU oracle: any CPU op, multiple outputs, NHWC layers, weights as inputs."""
import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

from workbench.backends.base import Layer
import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.cuda.registry import TACTICS

gpu = pytest.mark.gpu


def _tactic(name):
    return next(t for t in TACTICS if t.name == name)


def test_fallback_supports_every_cpu_op_and_is_not_capturable():
    fallback = _tactic("fallback.host")
    assert fallback.source == "fallback" and fallback.capturable is False
    for op, domain in (("Conv", ""), ("TopK", ""), ("PointwiseChain", "workbench"), ("Resize", "")):
        assert fallback.supports(Layer("l", op, ["x"], ["y"], domain=domain, precision="int8"), "int8")
    assert not fallback.supports(Layer("l", "NoSuchOp", ["x"], ["y"]), "fp32")


@gpu
def test_fallback_two_outputs_and_constant_input(cp):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 17)).astype(np.float32)
    k = np.array([4], np.int64)
    layer = Layer("topk", "TopK", ["x", "k"], ["values", "indices"], {"axis": -1}, opset=17)
    assert_matches_oracle(_tactic("fallback.host"), layer, {"k": k}, [x, k])


@gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fallback_nhwc_layer(cp, precision):
    rng = np.random.default_rng(1)
    dtype = np.float16 if precision == "fp16" else np.float32
    x = rng.standard_normal((2, 5, 6, 8)).astype(dtype)              # NHWC storage of [2, 8, 5, 6]
    layer = Layer("lrn", "LRN", ["x"], ["y"], {"size": 3}, opset=17, precision=precision, layout="NHWC")
    assert_matches_oracle(_tactic("fallback.host"), layer, {}, [x])
