"""cudnn.conv_fused (cuDNN 9 through the Python frontend) against the CPU oracle; skipped where
the frontend is not installed. Strict where cuDNN's fused conv engines are documented to run
(group 1, ReLU or no activation, fp16 and tf32, with and without residual, NHWC); elsewhere (other
activations, groups, C=3, fp32 without tensor cores) a graph cuDNN has no engine for is reported
as a skip naming the case, and any plan it does build must agree with the oracle."""
from __future__ import annotations

import pytest
from conv_cases import ACTIVATIONS, PRECISIONS, SHAPES, conv_case, shapes_where
from gemm_cases import assert_graph_capturable
from gpu_checks import assert_matches_oracle, cp  # noqa: F401

from workbench.builder.oracle import oracle_outputs

pytestmark = pytest.mark.gpu
cudnn = pytest.importorskip("cudnn", reason="nvidia-cudnn-frontend is not installed: no cuDNN tactic to test")

ALIGNED_GROUP1 = shapes_where(lambda c, k, kernel, attrs: attrs.get("group", 1) == 1 and c % 8 == 0 and k % 8 == 0)


def _tactic():
    from workbench.backends.cuda.tactics.cudnn_conv import CudnnConv
    return CudnnConv()


def _check_or_skip(lay, weights, inputs, strict: bool):
    from workbench.backends.cuda.tactics.cudnn_conv import CudnnUnsupportedError
    try:
        assert_matches_oracle(_tactic(), lay, weights, inputs)
    except CudnnUnsupportedError as exc:
        if strict:
            raise
        pytest.skip(f"cuDNN builds no plan here: {exc}")


def test_registered():
    from workbench.backends.cuda.registry import TACTICS
    from workbench.backends.cuda.tactics import cudnn_conv  # noqa: F401
    assert "cudnn.conv_fused" in [t.name for t in TACTICS]


@pytest.mark.parametrize("precision", ["fp16", "tf32"])
@pytest.mark.parametrize("residual,activation", [(False, None), (False, "Relu"), (True, "Relu"), (True, "")])
@pytest.mark.parametrize("shape_id", ALIGNED_GROUP1)
def test_fused_conv_group1(cp, shape_id, residual, activation, precision):
    lay, weights, inputs = conv_case(shape_id, precision, residual=residual, activation=activation)
    assert _tactic().supports(lay, precision)
    _check_or_skip(lay, weights, inputs, strict=True)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape_id", [s for s in SHAPES if s not in ALIGNED_GROUP1])
def test_other_geometries(cp, shape_id, precision):
    lay, weights, inputs = conv_case(shape_id, precision, activation="Relu")
    _check_or_skip(lay, weights, inputs, strict=False)


@pytest.mark.parametrize("shape_id", ["3x3_pad1", "1x1"])
def test_fp32_stays_fp32(cp, shape_id):
    """fp32 deselects tensor-core (TF32) engines: the fp32 tolerance (1e-4) holds when a plan exists."""
    lay, weights, inputs = conv_case(shape_id, "fp32", residual=True, activation="Relu")
    _check_or_skip(lay, weights, inputs, strict=False)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation,params", [a for a in ACTIVATIONS if a[0] not in ("", "Relu", "HardSwish")])
def test_other_activations(cp, activation, params, residual):
    lay, weights, inputs = conv_case("resnet_3x3", "fp16", residual=residual, activation=activation, params=params)
    assert _tactic().supports(lay, "fp16")
    _check_or_skip(lay, weights, inputs, strict=False)


def test_a_new_input_shape_gets_its_own_plan(cp):
    """One prepared state runs batch 4 then batch 1 (a plan per input shape)."""
    import cupy

    from workbench.builder.oracle import check_outputs
    tactic = _tactic()
    lay, weights, inputs = conv_case("resnet_3x3", "fp16", residual=True, activation="Relu")
    state = tactic.prepare(lay, weights)
    for batch in (4, 1):
        host = [a[:batch] if name in ("x", "z") else a for name, a in zip(lay.inputs, inputs)]
        want = oracle_outputs(lay, weights, host)[0]
        out = cupy.empty(want.shape, want.dtype)
        tactic.run(state, [None if a is None else cupy.asarray(a) for a in host], [out], None)
        ok, err = check_outputs(lay, [cupy.asnumpy(out)], [want])
        assert ok, f"batch {batch}: rel L2 {err:.3g}"
    assert len(state.plans) == 2


@pytest.mark.parametrize("shape_id", ["resnet_3x3", "1x1"])
def test_run_is_graph_capturable(cp, shape_id):
    lay, weights, inputs = conv_case(shape_id, "fp16", residual=True, activation="Relu")
    out = oracle_outputs(lay, weights, inputs)[0]
    lay.output_shapes, lay.output_dtypes = [out.shape], [out.dtype.name]
    assert_graph_capturable(_tactic(), lay, weights, inputs, out.shape, out.dtype)
