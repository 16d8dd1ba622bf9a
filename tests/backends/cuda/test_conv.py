"""cublas.conv1x1 and cublas.conv_im2col against the CPU oracle: every group-1 geometry of the
matrix (strides, pads, asymmetric and SAME pads, dilations, 1x1/3x3/7x7, C=3, odd sizes, batch 1
and 2), each activation with and without residual, fp32/tf32/fp16; im2col in several chunks;
a workspace sized on the first run; and the run captured into a CUDA graph without allocating."""
from __future__ import annotations

import numpy as np
import pytest
from conv_cases import ACTIVATIONS, PRECISIONS, conv_case, group_one, shapes_where
from gemm_cases import assert_graph_capturable
from gpu_checks import assert_matches_oracle, cp, run_tactic  # noqa: F401

from workbench.builder.oracle import check_outputs, oracle_outputs

pytestmark = pytest.mark.gpu

ONE_BY_ONE = shapes_where(lambda c, k, kernel, attrs: tuple(kernel) == (1, 1) and "strides" not in attrs)


def _conv1x1():
    from workbench.backends.cuda.tactics.conv import Conv1x1Gemm
    return Conv1x1Gemm()


def _im2col():
    from workbench.backends.cuda.tactics.conv import Im2colGemm
    return Im2colGemm()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape_id", shapes_where(group_one))
def test_im2col_every_group1_geometry(cp, shape_id, precision):
    lay, weights, inputs = conv_case(shape_id, precision)
    assert _im2col().supports(lay, precision)
    assert_matches_oracle(_im2col(), lay, weights, inputs)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape_id", ONE_BY_ONE)
def test_conv1x1(cp, shape_id, precision):
    lay, weights, inputs = conv_case(shape_id, precision)
    assert _conv1x1().supports(lay, precision)
    assert_matches_oracle(_conv1x1(), lay, weights, inputs)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("activation,params", ACTIVATIONS)
@pytest.mark.parametrize("make,shape_id", [(_conv1x1, "1x1"), (_im2col, "3x3_stride2")])
def test_fused_epilogue(cp, make, shape_id, activation, params, residual, precision):
    lay, weights, inputs = conv_case(shape_id, precision, residual=residual, activation=activation, params=params)
    assert_matches_oracle(make(), lay, weights, inputs)


@pytest.mark.parametrize("make", [_conv1x1, _im2col])
def test_no_bias_with_residual(cp, make):
    lay, weights, inputs = conv_case("1x1", "fp16", bias=False, residual=True, activation="Relu")
    assert lay.inputs[2] == ""
    assert_matches_oracle(make(), lay, weights, inputs)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_im2col_runs_in_chunks(cp, monkeypatch, precision):
    """A workspace of a few rows: many GEMM chunks, the last one partial, residual sliced along."""
    from workbench.backends.cuda.tactics import conv
    lay, weights, inputs = conv_case("3x3_pad1", precision, residual=True, activation="Relu")
    kpad = -(-16 * 9 // 8) * 8
    monkeypatch.setattr(conv, "_WORKSPACE_BYTES", 37 * kpad * np.dtype(inputs[0].dtype).itemsize)
    tactic = conv.Im2colGemm()
    assert_matches_oracle(tactic, lay, weights, inputs)
    assert tactic.prepare(lay, weights).workspace.shape == (37, kpad)    # 2*9*11 = 198 rows: 6 chunks


def test_im2col_workspace_sized_on_first_run_for_a_dynamic_batch(cp):
    lay, weights, inputs = conv_case("3x3_stride2", "fp16", residual=True, activation="SiLU")
    want = oracle_outputs(lay, weights, inputs)
    lay.output_shapes = [(None,) + want[0].shape[1:]]
    got = run_tactic(_im2col(), lay, weights, inputs, output_shapes=[want[0].shape], output_dtypes=[want[0].dtype])
    ok, err = check_outputs(lay, got, want)
    assert ok, f"rel L2 {err:.3g}"


@pytest.mark.parametrize("make,shape_id", [(_conv1x1, "1x1"), (_im2col, "7x7_stride2_c3")])
def test_run_is_graph_capturable(cp, make, shape_id):
    lay, weights, inputs = conv_case(shape_id, "fp16", residual=True, activation="Relu")
    out = oracle_outputs(lay, weights, inputs)[0]
    lay.output_shapes, lay.output_dtypes = [out.shape], [out.dtype.name]
    assert_graph_capturable(make(), lay, weights, inputs, out.shape, out.dtype)

