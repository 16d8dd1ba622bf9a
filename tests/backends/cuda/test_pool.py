"""kernels.pool2d and kernels.global_pool against the CPU oracle: pads, strides, dilations,
ceil_mode, count_include_pad, auto_pad, NCHW and NHWC, fp32 and fp16."""
import numpy as np
import pytest
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

import workbench.backends.cuda.tactics  # noqa: F401  (registers the tactics)
from workbench.backends.base import Layer
from workbench.backends.cuda.registry import TACTICS

gpu = pytest.mark.gpu


def _tactic(name):
    return next(t for t in TACTICS if t.name == name)


def test_pool_supports():
    window, global_ = _tactic("kernels.pool2d"), _tactic("kernels.global_pool")
    assert window.supports(Layer("p", "MaxPool", ["x"], ["y"], {"kernel_shape": [3, 3]}, layout="NHWC"), "fp16")
    assert not window.supports(Layer("p", "MaxPool", ["x"], ["y", "i"], {"kernel_shape": [3, 3]}), "fp16")
    assert not window.supports(Layer("p", "AveragePool", ["x"], ["y"], {"kernel_shape": [3]}), "fp32")
    assert not window.supports(Layer("p", "AveragePool", ["x"], ["y"], {"kernel_shape": [3, 3]}), "int8")
    assert global_.supports(Layer("g", "GlobalAveragePool", ["x"], ["y"]), "fp32")
    assert not global_.supports(Layer("g", "GlobalAveragePool", ["x"], ["y"], output_shapes=[(2, 3, 1)]), "fp32")


CASES = [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 3], "strides": [2, 1], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 1, 0, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [0, 1, 1, 0], "ceil_mode": 1,
                     "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [7, 7]}),
]


@gpu
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("layout", ["", "NHWC"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_window_pool(cp, case, layout, precision):
    op, attrs = CASES[case]
    dtype = np.float16 if precision == "fp16" else np.float32
    nchw = (2, 19, 13, 14)
    x = np.random.default_rng(case).standard_normal(nchw).astype(dtype)
    if layout:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    layer = Layer("pool", op, ["x"], ["y"], attrs, opset=19, precision=precision, layout=layout)
    assert_matches_oracle(_tactic("kernels.pool2d"), layer, {}, [x])


@gpu
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("layout", ["", "NHWC"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_global_pool(cp, op, layout, precision):
    dtype = np.float16 if precision == "fp16" else np.float32
    shape = (3, 7, 7, 67) if layout else (3, 67, 7, 7)
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    layer = Layer("gp", op, ["x"], ["y"], opset=17, precision=precision, layout=layout)
    assert_matches_oracle(_tactic("kernels.global_pool"), layer, {}, [x])


@gpu
def test_pools_are_capturable(cp):
    from graph_checks import assert_capturable
    x = np.random.default_rng(7).standard_normal((2, 9, 9, 16)).astype(np.float16)
    layer = Layer("pool", "MaxPool", ["x"], ["y"], CASES[0][1], opset=19, precision="fp16", layout="NHWC")
    assert_capturable(_tactic("kernels.pool2d"), layer, {}, [x])
    layer = Layer("gp", "GlobalAveragePool", ["x"], ["y"], opset=17, precision="fp16", layout="NHWC")
    assert_capturable(_tactic("kernels.global_pool"), layer, {}, [x])
