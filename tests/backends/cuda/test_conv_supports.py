"""CPU-only: which convolution layers each CUDA conv tactic accepts (supports() never touches the
GPU), the refusals prepare() makes before touching it, and the geometry every tactic shares
(pads resolved exactly as the CPU oracle resolves them, auto_pad included)."""
from __future__ import annotations

import numpy as np
import pytest
from conv_cases import SHAPES, conv_case, conv_layer

from workbench.backends.base import Layer
from workbench.backends.cuda.tactics.conv import Conv1x1Gemm, Im2colGemm
from workbench.backends.cuda.tactics.conv_direct import DirectConv
from workbench.backends.cuda.tactics.conv_igemm import CONFIGS, ImplicitGemmConv
from workbench.backends.cuda.tactics.conv_spec import conv_weights, geometry
from workbench.backends.cuda.tactics.cudnn_conv import CudnnConv

ALL = [Conv1x1Gemm(), Im2colGemm(), DirectConv(False), DirectConv(True), CudnnConv()] + \
      [ImplicitGemmConv(*c) for c in CONFIGS]


def _accepting(lay, precision="fp16") -> set[str]:
    return {t.name for t in ALL if t.supports(lay, precision)}


def test_names_and_sources():
    assert [t.name for t in ALL[:5]] == ["cublas.conv1x1", "cublas.conv_im2col", "kernels.conv_grouped",
                                         "kernels.conv_depthwise", "cudnn.conv_fused"]
    assert [t.name for t in ALL[5:]] == ["kernels.conv_igemm_128x128x32", "kernels.conv_igemm_128x64x32",
                                         "kernels.conv_igemm_64x64x32", "kernels.conv_igemm_128x128x64",
                                         "kernels.conv_igemm_64x128x32", "kernels.conv_igemm_32x64x32"]
    assert [t.source for t in ALL[:5]] == ["cublas", "cublas", "kernels", "kernels", "cudnn"]


def test_dense_3x3_fp16_is_everyone_but_conv1x1_and_depthwise():
    lay = conv_layer("fp16", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, residual=True, activation="Relu")
    names = _accepting(lay)
    assert "cublas.conv1x1" not in names and "kernels.conv_depthwise" not in names
    assert {"cublas.conv_im2col", "kernels.conv_grouped", "cudnn.conv_fused", "kernels.conv_igemm_128x128x32"} <= names


def test_conv1x1_only_for_1x1_stride1_unpadded_group1():
    base = {"kernel_shape": [1, 1]}
    assert Conv1x1Gemm().supports(conv_layer("fp32", base), "fp32")
    assert Conv1x1Gemm().supports(conv_layer("fp32", dict(base, auto_pad="SAME_UPPER")), "fp32")
    for attrs in ({"kernel_shape": [3, 3]}, {}, dict(base, strides=[2, 2]), dict(base, pads=[1, 1, 1, 1]),
                  dict(base, group=2)):
        assert not Conv1x1Gemm().supports(conv_layer("fp32", attrs), "fp32"), attrs


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16"])
def test_float_precisions_everywhere_but_igemm_is_fp16_only(precision):
    lay = conv_layer(precision, {"kernel_shape": [1, 1]})
    names = _accepting(lay, precision)
    assert {"cublas.conv1x1", "cublas.conv_im2col", "kernels.conv_grouped", "cudnn.conv_fused"} <= names
    assert any(n.startswith("kernels.conv_igemm") for n in names) == (precision == "fp16")


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_other_precisions_refused(precision):
    assert not _accepting(conv_layer(precision, {"kernel_shape": [3, 3]}), precision)


def test_layout_op_and_rank_refused():
    nchw = conv_layer("fp16", {"kernel_shape": [3, 3]})
    nchw.layout = ""
    assert not _accepting(nchw)
    conv3d = conv_layer("fp16", {"kernel_shape": [3, 3, 3]})
    assert not _accepting(conv3d)
    matmul = Layer(name="mm", op="MatMul", inputs=["a", "b"], outputs=["y"], precision="fp16", layout="NHWC")
    assert not _accepting(matmul)


def test_activations_hardswish_is_ours_not_cudnns():
    lay = conv_layer("fp16", {"kernel_shape": [3, 3]}, activation="HardSwish")
    names = _accepting(lay)
    assert "kernels.conv_grouped" in names and "cudnn.conv_fused" not in names
    unknown = conv_layer("fp16", {"kernel_shape": [3, 3]}, activation="Softplus")
    assert not _accepting(unknown)


def test_grouped_and_depthwise():
    grouped = conv_layer("fp32", {"kernel_shape": [3, 3], "group": 4})
    assert _accepting(grouped, "fp32") == {"kernels.conv_grouped", "cudnn.conv_fused"}
    depthwise = conv_layer("fp32", {"kernel_shape": [3, 3], "group": 8})
    depthwise.output_shapes = [(1, 4, 4, 8)]
    assert {"kernels.conv_depthwise", "kernels.conv_grouped"} <= _accepting(depthwise, "fp32")
    for k in (16, None):                   # a depth multiplier, or K unknown: conv_grouped's
        other = conv_layer("fp32", {"kernel_shape": [3, 3], "group": 8})
        other.output_shapes = [(1, 4, 4, k)] if k else []
        assert "kernels.conv_depthwise" not in _accepting(other, "fp32")


def test_igemm_refuses_known_unaligned_k_and_prepare_refuses_c3_before_touching_the_gpu():
    lay = conv_layer("fp16", {"kernel_shape": [3, 3]})
    lay.output_shapes = [(2, 8, 8, 12)]
    assert not any(n.startswith("kernels.conv_igemm") for n in _accepting(lay))
    lay, weights, _ = conv_case("7x7_stride2_c3", "fp16")
    with pytest.raises(ValueError, match="multiples of 8"):
        ImplicitGemmConv(*CONFIGS[0]).prepare(lay, weights)


def test_depthwise_prepare_refuses_a_depth_multiplier_before_touching_the_gpu():
    lay, weights, _ = conv_case("depthwise_multiplier", "fp32")
    lay.output_shapes = [(2, 7, 7, 8)]         # a wrong K claimed by the layer: the weight decides
    with pytest.raises(ValueError, match="not depthwise"):
        DirectConv(depthwise=True).prepare(lay, weights)


def test_prepare_needs_constant_weights_and_names_the_layer():
    lay, weights, _ = conv_case("3x3_pad1", "fp32")
    with pytest.raises(ValueError, match="conv_test.*'w' is not a constant"):
        Im2colGemm().prepare(lay, {})


def test_workspace_is_bounded():
    lay = conv_layer("fp16", {"kernel_shape": [3, 3]})
    assert 0 < Im2colGemm().workspace_bytes(lay) <= 256 << 20
    assert Conv1x1Gemm().workspace_bytes(lay) == 0


@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_geometry_matches_the_oracle_output_shape(shape_id):
    """The NHWC output shape every tactic computes equals what the CPU oracle produces."""
    from workbench.builder.oracle import oracle_outputs
    lay, weights, inputs = conv_case(shape_id, "fp32", residual=True, activation="Relu")
    cw = conv_weights(lay, weights, "test")
    geo = geometry(lay, cw, inputs[0].shape)
    assert geo.out_shape == oracle_outputs(lay, weights, inputs)[0].shape
    assert geo.out_shape == inputs[3].shape
    assert cw.bias.dtype == np.float32 and cw.w.dtype == np.float32


def test_same_lower_puts_the_odd_pad_first():
    lay, weights, inputs = conv_case("same_upper_stride2", "fp32")
    lay.attrs["auto_pad"] = "SAME_LOWER"
    lay.attrs["strides"] = [1, 1]
    lay.attrs["kernel_shape"] = [2, 2]
    weights["w"] = weights["w"][:, :, :2, :2].copy()
    geo = geometry(lay, conv_weights(lay, weights, "test"), inputs[0].shape)
    assert (geo.pad_top, geo.pad_bottom, geo.p) == (1, 0, 9)
