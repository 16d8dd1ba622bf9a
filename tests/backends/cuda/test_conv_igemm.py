"""kernels.conv_igemm_* (our implicit-GEMM tensor-core conv) against the CPU oracle: every tile
configuration on every fp16 geometry it accepts (group 1, C and K multiples of 8: strides, pads,
SAME/VALID, dilations, 1x1/3x3, odd spatial sizes, partial M/N/K tiles, batch 1 and 4), each
activation with and without residual, no bias, and the run captured into a CUDA graph."""
from __future__ import annotations

import pytest
from conv_cases import ACTIVATIONS, conv_case, shapes_where
from gemm_cases import assert_graph_capturable
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

from workbench.backends.cuda.tactics.conv_igemm import CONFIGS, ImplicitGemmConv
from workbench.builder.oracle import oracle_outputs

pytestmark = pytest.mark.gpu

ALIGNED = shapes_where(lambda c, k, kernel, attrs: attrs.get("group", 1) == 1 and c % 8 == 0 and k % 8 == 0)
CONFIG_IDS = ["{}x{}x{}".format(*c[:3]) for c in CONFIGS]


def _tactic(config):
    return ImplicitGemmConv(*config)


@pytest.mark.parametrize("shape_id", ALIGNED)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_every_config_every_aligned_geometry(cp, config, shape_id):
    lay, weights, inputs = conv_case(shape_id, "fp16")
    tactic = _tactic(config)
    assert tactic.supports(lay, "fp16")
    assert_matches_oracle(tactic, lay, weights, inputs)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation,params", ACTIVATIONS)
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[5]], ids=[CONFIG_IDS[0], CONFIG_IDS[5]])
def test_fused_epilogue(cp, config, activation, params, residual):
    lay, weights, inputs = conv_case("resnet_3x3", "fp16", residual=residual, activation=activation, params=params)
    assert_matches_oracle(_tactic(config), lay, weights, inputs)


@pytest.mark.parametrize("shape_id", ["wide_k_1x1", "3x3_stride2"])
def test_residual_without_bias(cp, shape_id):
    lay, weights, inputs = conv_case(shape_id, "fp16", bias=False, residual=True, activation="Relu")
    assert_matches_oracle(_tactic(CONFIGS[1]), lay, weights, inputs)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[4]], ids=[CONFIG_IDS[0], CONFIG_IDS[4]])
def test_run_is_graph_capturable(cp, config):
    lay, weights, inputs = conv_case("resnet_3x3", "fp16", residual=True, activation="Relu")
    out = oracle_outputs(lay, weights, inputs)[0]
    lay.output_shapes, lay.output_dtypes = [out.shape], [out.dtype.name]
    assert_graph_capturable(_tactic(config), lay, weights, inputs, out.shape, out.dtype)
