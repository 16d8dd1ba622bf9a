"""cupy.reduce and cupy.arg_extreme against the CPU oracle."""
import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

from workbench.backends.base import Layer
import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.cuda.registry import TACTICS

gpu = pytest.mark.gpu


def _tactic(name):
    return next(t for t in TACTICS if t.name == name)


def test_reduce_supports():
    reduce, arg = _tactic("cupy.reduce"), _tactic("cupy.arg_extreme")
    for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"):
        assert reduce.supports(Layer("r", op, ["x"], ["y"], opset=17), "fp32")
    assert not reduce.supports(Layer("r", "ReduceProd", ["x"], ["y"], opset=17), "fp32")
    assert arg.supports(Layer("a", "ArgMax", ["x"], ["y"], opset=17), "fp16")
    assert not arg.supports(Layer("a", "Softmax", ["x"], ["y"], opset=17), "fp16")


@gpu
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, 2], 0), (None, 1), ([-1], 0)])
def test_reduce_matches_oracle(cp, op, precision, axes, keepdims):
    rng = np.random.default_rng(0)
    dtype = np.float16 if precision == "fp16" else np.float32
    x = rng.standard_normal((3, 37, 5)).astype(dtype)
    attrs = {"keepdims": keepdims}
    inputs, weights, names = [x], {}, ["x"]
    opset = 13 if op == "ReduceSum" else 17             # ReduceSum-13 takes axes as an input
    if axes is not None:
        if op == "ReduceSum":
            weights["axes"] = np.array(axes, np.int64)
            inputs.append(weights["axes"])
            names.append("axes")
        else:
            attrs["axes"] = axes
    layer = Layer("r", op, names, ["y"], attrs, opset=opset, precision=precision)
    assert_matches_oracle(_tactic("cupy.reduce"), layer, weights, inputs)


@gpu
def test_reduce_mean_nhwc_remaps_spatial_axes(cp):
    x = np.random.default_rng(2).standard_normal((2, 4, 5, 6)).astype(np.float32)   # NHWC of [2, 6, 4, 5]
    layer = Layer("r", "ReduceMean", ["x"], ["y"], {"axes": [2, 3], "keepdims": 1}, opset=17, layout="NHWC")
    assert_matches_oracle(_tactic("cupy.reduce"), layer, {}, [x])


@gpu
def test_reduce_sum_int64_exact(cp):
    x = np.random.default_rng(3).integers(-10**12, 10**12, (4, 9)).astype(np.int64)
    layer = Layer("r", "ReduceSum", ["x", "axes"], ["y"], {"keepdims": 0}, opset=13)
    axes = np.array([1], np.int64)
    assert_matches_oracle(_tactic("cupy.reduce"), layer, {"axes": axes}, [x, axes])


@gpu
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(1, 1, 0), (0, 0, 0), (-1, 1, 1)])
def test_arg_extreme(cp, op, axis, keepdims, last):
    x = np.random.default_rng(4).integers(0, 5, (6, 7, 3)).astype(np.float32)   # ties on purpose
    layer = Layer("a", op, ["x"], ["y"], {"axis": axis, "keepdims": keepdims, "select_last_index": last}, opset=13)
    assert_matches_oracle(_tactic("cupy.arg_extreme"), layer, {}, [x])


@gpu
def test_reductions_are_capturable(cp):
    from graph_checks import assert_capturable
    x = np.random.default_rng(8).standard_normal((4, 33, 7)).astype(np.float32)
    layer = Layer("r", "ReduceMean", ["x"], ["y"], {"axes": [1], "keepdims": 1}, opset=17)
    assert_capturable(_tactic("cupy.reduce"), layer, {}, [x])
    assert_capturable(_tactic("cupy.arg_extreme"), Layer("a", "ArgMax", ["x"], ["y"], {"axis": 1}, opset=13), {}, [x])
