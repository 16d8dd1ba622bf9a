"""CPU elementwise/activation/reduce/generator kernels: behaviour the ONNX node tests do not cover
(dtype preservation, NaN/Inf propagation, integer semantics, opset-dependent signatures), each
checked against onnxruntime on a one-node model or against hand-computed values."""
import warnings

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import workbench.backends.cpu  # noqa: F401  (registers the kernels)
from workbench.backends.cpu.registry import NodeInfo, lookup


def cpu(op, inputs, opset=21, num_outputs=1, **attrs):
    out = lookup("", op)(inputs, attrs, NodeInfo(opset, num_outputs, op))
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def ort_run(op, inputs, opset=21, **attrs):
    names = [f"x{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs)))[0]


@pytest.mark.parametrize("op,attrs", [("Add", {}), ("Softmax", {"axis": 1}), ("LogSoftmax", {}),
                                      ("Gelu", {"approximate": "tanh"}), ("ReduceSumSquare", {})])
def test_float16_stays_float16_and_matches_ort(op, attrs):
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float16)
    inputs = [x, x[::-1].copy()] if op == "Add" else [x]
    got = cpu(op, inputs, **attrs)
    want = ort_run(op, inputs, **attrs)
    assert got.dtype == np.float16 and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=2e-3)


def test_nan_inf_propagate_without_warnings():
    x = np.array([[np.nan, 1.0, -np.inf], [np.inf, 2.0, 3.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        relu = cpu("Relu", [x])
        soft = cpu("Softmax", [x], axis=1)
        rmax = cpu("ReduceMax", [x, np.array([1], np.int64)], keepdims=0)
        lse = cpu("ReduceLogSumExp", [x, np.array([1], np.int64)], keepdims=0)
    np.testing.assert_array_equal(relu, [[np.nan, 1, 0], [np.inf, 2, 3]])
    assert np.isnan(soft[0]).all() and np.isnan(soft[1, 0])  # inf - inf in the stable form
    np.testing.assert_array_equal(rmax, [np.nan, np.inf])
    np.testing.assert_array_equal(lse, [np.nan, np.inf])


def test_integer_div_truncates_and_mod_follows_divisor_sign():
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    np.testing.assert_array_equal(cpu("Div", [a, b]), [3, -3, -3, 3, 0])
    np.testing.assert_array_equal(cpu("Mod", [a, b]), [1, 1, -1, -1, 0])
    np.testing.assert_array_equal(cpu("Mod", [a, b], fmod=1), [1, -1, 1, -1, 0])
    assert cpu("Div", [a, b]).dtype == np.int32


def test_integer_pow_keeps_dtype():
    base = np.array([2, -3, 1, -1, 5], np.int64)
    got = cpu("Pow", [base, np.array([3, 3, -2, -3, -1], np.int64)])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [8, -27, 1, -1, 0])
    got = cpu("Pow", [base.astype(np.int32), np.array(2.0, np.float32)])
    assert got.dtype == np.int32 and got.tolist() == [4, 9, 1, 1, 25]


def test_softmax_opset11_coerces_to_2d():
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    got = cpu("Softmax", [x], opset=11, axis=1)  # normalizes over the flattened 3*4 block
    np.testing.assert_allclose(got.reshape(2, -1).sum(axis=1), [1, 1], rtol=1e-6)
    np.testing.assert_allclose(got, ort_run("Softmax", [x], opset=11, axis=1), rtol=1e-6)


def test_reduce_axes_attribute_vs_input_by_opset():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    old = cpu("ReduceMean", [x], opset=13, axes=[-1], keepdims=0)
    new = cpu("ReduceMean", [x, np.array([-1], np.int64)], opset=18, keepdims=0)
    np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(old, ort_run("ReduceMean", [x], opset=13, axes=[-1], keepdims=0))
    same = cpu("ReduceSum", [x, np.array([], np.int64)], opset=13, noop_with_empty_axes=1)
    np.testing.assert_array_equal(same, x)


def test_empty_and_scalar_tensors():
    s = np.array(2.0, np.float32)
    assert cpu("Add", [s, s]).shape == () and cpu("Sigmoid", [s]).shape == ()
    e = np.zeros((2, 0), np.float32)
    assert cpu("Softmax", [e]).shape == (2, 0)
    np.testing.assert_array_equal(cpu("ReduceSum", [e, np.array([1], np.int64)], keepdims=0), [0, 0])
    np.testing.assert_array_equal(cpu("ReduceMax", [e, np.array([1], np.int64)], keepdims=0), [-np.inf] * 2)
    assert cpu("ReduceMin", [np.zeros((0,), np.int32)], keepdims=0) == np.iinfo(np.int32).max


def test_cast_float8_saturates_and_bfloat16_rounds():
    x = np.array([1000.0, -np.inf, np.nan, 0.3], np.float32)
    got = cpu("Cast", [x], to=TensorProto.FLOAT8E4M3FN)
    assert got.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(got.astype(np.float32)[[0, 1, 3]], [448, -448, 0.3125])
    assert np.isnan(got.astype(np.float32)[2])
    raw = cpu("Cast", [x], to=TensorProto.FLOAT8E4M3FN, saturate=0).astype(np.float32)
    assert np.isnan(raw[:3]).all()  # no saturation: out of range -> NaN (E4M3FN has no inf)
    bf = cpu("Cast", [np.array([1.00390625, 1.01171875], np.float32)], to=TensorProto.BFLOAT16)
    np.testing.assert_array_equal(bf.astype(np.float32), [1.0, 1.015625])  # round half to even


def test_clip_int_and_min_above_max():
    x = np.array([-5, 0, 5], np.int8)
    got = cpu("Clip", [x, np.array(-2, np.int8), np.array(3, np.int8)])
    assert got.dtype == np.int8 and got.tolist() == [-2, 0, 3]
    assert cpu("Clip", [x, np.array(4, np.int8), np.array(1, np.int8)]).tolist() == [1, 1, 1]
    assert cpu("Clip", [x.astype(np.float32)], opset=6, min=-1.0).tolist() == [-1, 0, 5]


def test_comparisons_and_argmax_dtypes():
    a, b = np.array([1, 2, 3], np.uint8), np.array([3, 2, 1], np.uint8)
    assert cpu("GreaterOrEqual", [a, b]).dtype == np.bool_
    got = cpu("ArgMax", [np.array([[1, 3, 3]], np.float16)], axis=1, select_last_index=1)
    assert got.dtype == np.int64 and got.tolist() == [[2]]
