"""INT8 numerics against onnxruntime (QuantizeLinear, DequantizeLinear, MatMulInteger, QLinearMatMul on
one-node opset-17 models) and against values worked out by hand."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workbench.quant.errors import QuantizationError
from workbench.quant.quantize import dequantize, int8_matmul, quantize, requantize, weight_scales


def ort_node(op, feeds: dict, consts: dict, out_type, order=None, **attrs):
    """Run one `op` node: `feeds` are graph inputs, `consts` initializers; node inputs in `order`
    (default: feeds then consts)."""
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in feeds.items()]
    node = helper.make_node(op, order or [*feeds, *consts], ["y"], **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", out_type, None)],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def test_quantize_by_hand():
    x = np.array([0.25, 0.75, -0.25, -0.75, 1.25, 100.0, -100.0, np.nan], np.float32)
    assert quantize(x, 0.5).tolist() == [0, 2, 0, -2, 2, 127, -128, 0]          # half to even, saturate
    assert quantize(x, 0.5, 128, np.uint8).tolist() == [128, 130, 128, 126, 130, 255, 0, 128]
    assert dequantize(np.array([-128, 3, 127], np.int8), 0.5).tolist() == [-64.0, 1.5, 63.5]
    with pytest.raises(QuantizationError, match="scale"):
        quantize(x, 0.0)


@pytest.mark.parametrize("dtype,zp", [(np.int8, 0), (np.int8, -3), (np.uint8, 128)])
def test_per_tensor_vs_onnxruntime(dtype, zp):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 33)) * 3).astype(np.float32)
    x[0, :8] = np.float32(0.0625) * (np.arange(8) + 0.5)                      # exact ties
    scale, z = np.float32(0.0625), np.array(zp, dtype)
    want = ort_node("QuantizeLinear", {"x": x}, {"s": scale, "z": z}, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    got = quantize(x, scale, zp, dtype)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dequantize(got, scale, zp),
                                  ort_node("DequantizeLinear", {"q": got}, {"s": scale, "z": z}, TensorProto.FLOAT))


def test_per_channel_vs_onnxruntime():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)[:, None, None, None]
    w[5] = 0.0                                                                # an all-zero channel
    s = weight_scales(w, axis=0)
    np.testing.assert_allclose(s[:5], np.abs(w[:5]).reshape(5, -1).max(1) / 127, rtol=1e-6)
    assert s[5] == 1.0 and s.dtype == np.float32
    z = np.zeros(6, np.int8)
    want = ort_node("QuantizeLinear", {"w": w}, {"s": s, "z": z}, TensorProto.INT8, axis=0)
    q = quantize(w, s, 0, np.int8, axis=0)
    np.testing.assert_array_equal(q, want)
    assert np.abs(q).max() == 127 and q.min() >= -127
    np.testing.assert_array_equal(dequantize(q, s, 0, axis=0),
                                  ort_node("DequantizeLinear", {"q": q}, {"s": s, "z": z}, TensorProto.FLOAT, axis=0))
    assert weight_scales(w, axis=None).shape == () and weight_scales(w.reshape(6, 27).T, axis=1).shape == (6,)


def test_int8_matmul_exact_vs_onnxruntime():
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (5, 300), dtype=np.int8)
    b = rng.integers(-128, 128, (300, 7), dtype=np.int8)
    acc = int8_matmul(a, b)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, a.astype(np.int64) @ b.astype(np.int64))
    np.testing.assert_array_equal(acc, ort_node("MatMulInteger", {"a": a, "b": b}, {}, TensorProto.INT32))
    big = np.full((1, 140000), -128, np.int8)                                 # 140000 * 16384 > 2**31
    with pytest.raises(QuantizationError, match="overflow"):
        int8_matmul(big, big.T)
    with pytest.raises(QuantizationError, match="integer"):
        int8_matmul(a.astype(np.float32), b)


def test_requantize_by_hand_and_vs_qlinearmatmul():
    acc = np.array([[100, -100, 7, 10**6]], np.int32)
    assert requantize(acc, 0.5 * 0.25, 0.25).tolist() == [[50, -50, 4, 127]]        # 3.5 -> 4 (even)
    assert requantize(acc, np.array([1.0, 1.0, 0.5, 1.0]), 2.0, axis=1).tolist() == [[50, -50, 2, 127]]
    rng = np.random.default_rng(4)
    a = rng.integers(-127, 128, (16, 64), dtype=np.int8)
    b = rng.integers(-127, 128, (64, 16), dtype=np.int8)
    sa, sb, sy = np.float32(0.02), np.float32(0.01), np.float32(0.5)
    z = np.array(0, np.int8)
    want = ort_node("QLinearMatMul", {"a": a, "b": b},
                    {"sa": sa, "za": z, "sb": sb, "zb": z, "sy": sy, "zy": z}, TensorProto.INT8,
                    order=["a", "sa", "za", "b", "sb", "zb", "sy", "zy"])
    # ORT forms the multiplier in float32, we in float64 (as the CPU backend does): equal here; in
    # general a value within float32 rounding of a .5 tie could differ by 1 LSB
    np.testing.assert_array_equal(requantize(int8_matmul(a, b), float(sa) * float(sb), sy), want)
