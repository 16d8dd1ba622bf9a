"""kernels.conv_grouped and kernels.conv_depthwise against the CPU oracle: the grouped kernel on
every geometry of the matrix (it is the fallback for every Conv: groups, depthwise, C=3, odd
channels, strides, pads, dilations, SAME/VALID), the depthwise kernel on the depthwise ones,
fp32/tf32/fp16, each activation with and without residual, and the run captured into a CUDA graph."""
from __future__ import annotations

import pytest
from conv_cases import ACTIVATIONS, PRECISIONS, SHAPES, conv_case, shapes_where
from gemm_cases import assert_graph_capturable
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

from workbench.backends.cuda.tactics.conv_direct import DirectConv
from workbench.builder.oracle import oracle_outputs

pytestmark = pytest.mark.gpu

DEPTHWISE = shapes_where(lambda c, k, kernel, attrs: attrs.get("group", 1) == c == k)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_grouped_every_geometry(cp, shape_id, precision):
    lay, weights, inputs = conv_case(shape_id, precision)
    tactic = DirectConv(depthwise=False)
    assert tactic.supports(lay, precision)
    assert_matches_oracle(tactic, lay, weights, inputs)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape_id", DEPTHWISE)
def test_depthwise(cp, shape_id, precision):
    lay, weights, inputs = conv_case(shape_id, precision)
    tactic = DirectConv(depthwise=True)
    assert tactic.supports(lay, precision)
    assert_matches_oracle(tactic, lay, weights, inputs)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation,params", ACTIVATIONS)
@pytest.mark.parametrize("depthwise,shape_id", [(False, "grouped"), (False, "7x7_stride2_c3"),
                                                (True, "depthwise_stride2")])
def test_fused_epilogue(cp, depthwise, shape_id, activation, params, residual, precision):
    lay, weights, inputs = conv_case(shape_id, precision, residual=residual, activation=activation, params=params)
    assert_matches_oracle(DirectConv(depthwise), lay, weights, inputs)


@pytest.mark.parametrize("depthwise,shape_id", [(False, "odd_channels"), (True, "depthwise")])
def test_residual_without_bias(cp, depthwise, shape_id):
    lay, weights, inputs = conv_case(shape_id, "fp16", bias=False, residual=True, activation="LeakyRelu",
                                     params=[0.1])
    assert_matches_oracle(DirectConv(depthwise), lay, weights, inputs)


@pytest.mark.parametrize("depthwise,shape_id", [(False, "7x7_stride2_c3"), (True, "depthwise")])
def test_run_is_graph_capturable(cp, depthwise, shape_id):
    lay, weights, inputs = conv_case(shape_id, "fp16", residual=True, activation="Relu")
    out = oracle_outputs(lay, weights, inputs)[0]
    lay.output_shapes, lay.output_dtypes = [out.shape], [out.dtype.name]
    assert_graph_capturable(DirectConv(depthwise), lay, weights, inputs, out.shape, out.dtype)
