"""CPU conv/pool/norm/quantize kernels against onnxruntime on one-node models, for the cases our
CNN and INT8 work needs and the ONNX node tests barely cover: depthwise/grouped strided convs,
the ResNet stem, float16 convs, N-D convs, transposed convs, pool edge modes, per-channel Q/DQ."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import workbench.backends.cpu  # noqa: F401  (registers the kernels)
from workbench.backends.cpu.registry import NodeInfo, lookup

RNG = np.random.default_rng(1234)


def cpu(op, inputs, opset=17, num_outputs=1, **attrs):
    out = lookup("", op)(list(inputs), attrs, NodeInfo(opset, num_outputs, op))
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def ort_run(op, inputs, opset=17, out_types=None, **attrs):
    names = [f"x{i}" for i in range(len(inputs))]
    out_types = out_types or [helper.np_dtype_to_tensor_dtype(inputs[0].dtype)]
    outs = [f"y{i}" for i in range(len(out_types))]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, out_types)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs)))


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def check(op, inputs, tol=1e-5, opset=17, out_types=None, **attrs):
    got = cpu(op, inputs, opset, len(out_types or [0]), **attrs)
    want = ort_run(op, inputs, opset, out_types, **attrs)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
        if g.dtype.kind == "f":
            assert rel_l2(g, w) <= tol
        else:
            np.testing.assert_array_equal(g, w)
    return got


def sc(v):
    return np.array(v, np.float32)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("stride,pads", [(1, [1, 1, 1, 1]), (2, [1, 1, 1, 1]), (2, [0, 1, 1, 0])])
def test_depthwise_conv(mult, stride, pads):
    c = 8
    check("Conv", [f32(2, c, 13, 11), f32(c * mult, 1, 3, 3), f32(c * mult)],
          group=c, strides=[stride, stride], pads=pads)


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
def test_grouped_conv_stride2(auto_pad):
    attrs = {"pads": [1, 2, 1, 0]} if auto_pad == "NOTSET" else {"auto_pad": auto_pad}
    check("Conv", [f32(3, 8, 15, 12), f32(12, 2, 3, 3), f32(12)], group=4, strides=[2, 2], **attrs)


def test_resnet_stem_conv_and_ceil_maxpool():
    x = f32(2, 3, 57, 57)
    (y,) = check("Conv", [x, f32(16, 3, 7, 7), f32(16)], strides=[2, 2], pads=[3, 3, 3, 3])
    check("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    check("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
          out_types=[TensorProto.FLOAT, TensorProto.INT64])


@pytest.mark.parametrize("shape,kernel,attrs", [
    ((2, 4, 17), [3], dict(strides=[2], dilations=[2], pads=[2, 1])),
    ((1, 4, 6, 7, 5), [3, 2, 3], dict(strides=[1, 2, 2], pads=[1, 0, 1, 1, 1, 0])),
    ((2, 6, 9, 9), [1, 1], dict(strides=[2, 2])),
    ((1, 4, 9, 10), [3, 3], dict(dilations=[2, 3], pads=[2, 3, 2, 3], group=2)),
])
def test_conv_nd(shape, kernel, attrs):
    g = attrs.get("group", 1)
    check("Conv", [f32(*shape), f32(6, shape[1] // g, *kernel)], kernel_shape=kernel, **attrs)


def test_conv_float16_output_dtype_and_closeness():
    x, w, b = f32(2, 16, 20, 20), f32(32, 16, 3, 3) * 0.1, f32(32)
    got = cpu("Conv", [x.astype(np.float16), w.astype(np.float16), b.astype(np.float16)], pads=[1] * 4)[0]
    ref = ort_run("Conv", [x.astype(np.float16).astype(np.float32), w.astype(np.float16).astype(np.float32),
                           b.astype(np.float16).astype(np.float32)], pads=[1] * 4)[0]
    assert got.dtype == np.float16 and got.shape == ref.shape
    assert rel_l2(got, ref) <= 1e-3  # one float16 rounding of an fp32-accumulated result


@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    dict(strides=[2, 3], group=2, dilations=[2, 1]),
    dict(strides=[2, 2], output_shape=[15, 16]),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
])
def test_conv_transpose(attrs):
    check("ConvTranspose", [f32(2, 4, 7, 8), f32(4, 3, 3, 3), f32(3 * attrs.get("group", 1))], **attrs)


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_ceil_pads(count_include_pad):
    check("AveragePool", [f32(2, 3, 10, 11)], opset=19, kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=count_include_pad)


def test_maxpool_indices_storage_order_dilations():
    check("MaxPool", [f32(2, 3, 10, 11)], kernel_shape=[2, 3], strides=[2, 1], dilations=[2, 2],
          pads=[1, 1, 0, 1], storage_order=1, out_types=[TensorProto.FLOAT, TensorProto.INT64])


def test_global_pools_and_norms():
    x = f32(2, 6, 5, 7)
    check("GlobalAveragePool", [x])
    check("GlobalMaxPool", [x])
    check("BatchNormalization", [x, f32(6), f32(6), f32(6), np.abs(f32(6)) + 0.1], epsilon=1e-3)
    check("InstanceNormalization", [x, f32(6), f32(6)])
    check("LayerNormalization", [x, f32(5, 7), f32(5, 7)], axis=2)
    check("LRN", [x], size=3, alpha=1e-3, beta=0.75, bias=2.0)


def test_quantize_dequantize_per_channel_exact():
    scale = np.array([0.02, 0.5, 0.1, 1.0], np.float32)
    x = f32(2, 4, 6, 5) * 8
    x[0, :, 0, :] = (np.arange(5) - 2.5)[None, :] * scale[:, None]  # exact .5 ties round to even
    x[1, :, 0, 0] = [1e9, -1e9, np.float32(1e30), -3.0]  # saturation
    for zp in (np.array([0, 3, -128, 127], np.int8), np.array([0, 128, 255, 7], np.uint8)):
        (q,) = check("QuantizeLinear", [x, scale, zp], opset=13, axis=1,
                     out_types=[helper.np_dtype_to_tensor_dtype(zp.dtype)])
        check("DequantizeLinear", [q, scale, zp], opset=13, axis=1, tol=0,
              out_types=[TensorProto.FLOAT])


def test_quantize_fp16_and_dynamic():
    x = f32(3, 17)
    check("QuantizeLinear", [x.astype(np.float16), np.array(0.05, np.float16), np.array(120, np.uint8)],
          opset=19, out_types=[TensorProto.UINT8])
    check("DynamicQuantizeLinear", [x], opset=11,
          out_types=[TensorProto.UINT8, TensorProto.FLOAT, TensorProto.UINT8])


def test_qlinear_conv_per_channel_and_matmul():
    x = RNG.integers(0, 256, (1, 4, 9, 9), dtype=np.uint8)
    # 7-bit weights: onnxruntime's AVX2 u8s8 kernels saturate int16 pair sums on full-range int8
    w = RNG.integers(-64, 64, (6, 4, 3, 3), dtype=np.int8)
    ws = (RNG.random(6) * 0.01 + 0.001).astype(np.float32)
    bias = RNG.integers(-500, 500, 6).astype(np.int32)
    check("QLinearConv", [x, sc(0.02), np.array(128, np.uint8), w, ws, np.zeros(6, np.int8), sc(0.05),
                          np.array(100, np.uint8), bias], pads=[1, 1, 1, 1], strides=[2, 2],
          out_types=[TensorProto.UINT8])
    a = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    b = RNG.integers(0, 256, (7, 3), dtype=np.uint8)
    zp = [np.array(v, np.uint8) for v in (3, 200, 9)]
    check("QLinearMatMul", [a, sc(0.1), zp[0], b, sc(0.02), zp[1], sc(0.7), zp[2]],
          out_types=[TensorProto.UINT8])
    check("MatMulInteger", [a, b, zp[0], zp[1]], out_types=[TensorProto.INT32])


def test_gemm_matmul():
    check("Gemm", [f32(5, 4), f32(3, 5), f32(3)], transA=1, transB=1, alpha=0.5, beta=2.0)
    check("MatMul", [f32(2, 1, 4, 5), f32(3, 5, 6)])
    check("MatMul", [f32(5), f32(2, 5, 6)])
