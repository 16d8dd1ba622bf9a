"""Precision assignment (workbench.builder.precision): fp16/bf16/tf32 engines on the CPU backend,
checked against hand-computed references of what the GPU kernels compute."""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import onnx
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.backends import get_backend
from workbench.builder.build import build_network
from workbench.builder.config import BuilderConfig
from workbench.builder.network import Network
from workbench.builder.precision import assign_precision, round_to_tf32
from workbench.errors import BuildError
from workbench.evaluate import zoo
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.evaluate.metrics import accuracy
from workbench.runtime.engine import Engine

LOW = {"fp16": (np.dtype(np.float16), TensorProto.FLOAT16),
       "bf16": (np.dtype(ml_dtypes.bfloat16), TensorProto.BFLOAT16)}


def fp32_network(model, **config) -> Network:
    return build_network(wb.load(model), BuilderConfig(**config))


def lower(network: Network, precision: str) -> Network:
    """What build_network does once wired: assign precisions, then pick a tactic per layer."""
    layers, weights = assign_precision(network.layers, network.weights, network.inputs, network.outputs, precision)
    backend = get_backend(network.backend)
    for layer in layers:
        layer.tactic = backend.tactics(layer)[0].name
    return dataclasses.replace(network, layers=layers, weights=weights, precision=precision)


def run(network: Network, feeds: dict, keep=None) -> dict:
    return Engine(network).create_context().run(feeds, keep=keep)


def model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(proto)
    return proto


def f32_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def near_fp16(exact: np.ndarray, rng) -> np.ndarray:
    """float32 values that are not fp16 numbers but round (to nearest) back to `exact`, an array of
    fp16 numbers: a relative nudge below half an fp16 ulp."""
    return (exact * (1 + 2.0 ** -13 * rng.uniform(-1, 1, exact.shape))).astype(np.float32)


# -- TF32 ------------------------------------------------------------------------------------
def test_round_to_tf32_bit_patterns():
    cases = {                      # float32 bits -> TF32 bits (13 low bits dropped, nearest, ties to even)
        0x3F800000: 0x3F800000,    # 1.0 exact
        0x3F800FFF: 0x3F800000,    # below half: down
        0x3F801000: 0x3F800000,    # tie, kept bit even: down
        0x3F803000: 0x3F804000,    # tie, kept bit odd: up to even
        0x3F801001: 0x3F802000,    # above half: up
        0xBF801800: 0xBF802000,    # negative, above half: away from zero
        0x3FFFF000: 0x40000000,    # carry into the exponent
        0x7F7FFFFF: 0x7F800000,    # largest float32 rounds to infinity
        0x7F800000: 0x7F800000,    # +inf
        0x00001000: 0x00000000,    # subnormal tie: to even (zero)
        0x00003000: 0x00004000,    # subnormal tie: up to even
    }
    bits = np.array(list(cases), np.uint32)
    got = round_to_tf32(bits.view(np.float32)).view(np.uint32)
    assert [hex(b) for b in got] == [hex(b) for b in cases.values()]
    nan = np.array([0x7F800001, 0x7FC00000, 0xFFFFFFFF], np.uint32).view(np.float32)
    assert np.isnan(round_to_tf32(nan)).all()         # a NaN whose payload is in the dropped bits stays NaN
    with pytest.raises(TypeError):
        round_to_tf32(np.ones(2, np.float16))


def test_matmul_tf32_equals_numpy_on_rounded_operands():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 6)).astype(np.float32)
    a = rng.standard_normal((4, 32)).astype(np.float32)
    b = rng.standard_normal((32, 3)).astype(np.float32)
    proto = model([helper.make_node("MatMul", ["a", "W"], ["y1"], name="mm_weight"),
                   helper.make_node("MatMul", ["a", "b"], ["y2"], name="mm_act"),
                   helper.make_node("Relu", ["y2"], ["y3"], name="relu")],
                  [f32_info("a", [4, 32]), f32_info("b", [32, 3])],
                  [f32_info("y1", [4, 6]), f32_info("y3", [4, 3])], [("W", w)])
    net = fp32_network(proto)
    tf32 = lower(net, "tf32")
    rounders = [l for l in tf32.layers if l.op == "RoundTF32"]
    assert [(l.name, l.inputs, l.domain, l.precision) for l in rounders] == [
        ("a/round_tf32", ["a"], "workbench", "tf32"), ("b/round_tf32", ["b"], "workbench", "tf32")]
    assert {l.name: l.precision for l in tf32.layers if l.op != "RoundTF32"} == {
        "mm_weight": "tf32", "mm_act": "tf32", "relu": "fp32"}
    assert tf32.weights["W"].dtype == np.float32 and np.array_equal(tf32.weights["W"], round_to_tf32(w))

    got = run(tf32, {"a": a, "b": b})
    ta, tw, tb = (round_to_tf32(v).astype(np.float64) for v in (a, w, b))
    assert got["y1"].dtype == np.float32
    np.testing.assert_array_equal(got["y1"], (ta @ tw).astype(np.float32))
    np.testing.assert_array_equal(got["y3"], np.maximum(ta @ tb, 0).astype(np.float32))
    assert not np.array_equal(got["y1"], run(net, {"a": a, "b": b})["y1"])   # the rounding is not a no-op


# -- fp16 faithfulness ---------------------------------------------------------------------------
def test_conv_fp16_rounds_inputs_accumulates_wide_rounds_output_once():
    # fp16 operands with few significant bits: every product and partial sum is exact in float32,
    # so float32 and float64 accumulation agree and the only rounding left is the output's.
    rng = np.random.default_rng(1)
    x16 = rng.integers(-64, 65, (2, 3, 6, 6)) / 16
    w16 = rng.integers(-32, 33, (4, 3, 3, 3)) / 32
    b16 = rng.integers(-512, 513, 4) / 512
    proto = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                  [f32_info("x", [2, 3, 6, 6])], [f32_info("y", [2, 4, 6, 6])],
                  [("w", near_fp16(w16, rng)), ("b", near_fp16(b16, rng))])
    x = near_fp16(x16, rng)
    net = lower(fp32_network(proto), "fp16")

    windows = sliding_window_view(np.pad(x16, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    exact = np.einsum("ncijkl,mckl->nmij", windows, w16) + b16.reshape(1, -1, 1, 1)     # float64, exact
    want = exact.astype(np.float16).astype(np.float32)
    got = run(net, {"x": x})["y"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert (want != exact).any()                          # the output rounding was exercised
    assert not np.array_equal(got, run(fp32_network(proto), {"x": x})["y"])


def test_matmul_fp16_rounds_inputs_accumulates_wide_rounds_output_once():
    rng = np.random.default_rng(2)
    a16 = rng.integers(-64, 65, (3, 64)) / 16
    w16 = rng.integers(-32, 33, (64, 5)) / 32
    proto = model([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                  [f32_info("a", [3, 64])], [f32_info("y", [3, 5])], [("w", near_fp16(w16, rng))])
    net = lower(fp32_network(proto), "fp16")
    assert net.weights["w"].dtype == np.float16 and np.array_equal(net.weights["w"], w16)
    exact = a16 @ w16
    want = exact.astype(np.float16).astype(np.float32)
    got = run(net, {"a": near_fp16(a16, rng)}, keep={"y/fp16"})
    np.testing.assert_array_equal(got["y"], want)
    assert got["y/fp16"].dtype == np.float16 and (want != exact).any()


def test_fp16_weights_beyond_range_are_clamped_not_infinite():
    proto = model([helper.make_node("Mul", ["x", "c"], ["y"], name="scale")],
                  [f32_info("x", [2])], [f32_info("y", [2])], [("c", np.array([1e6, -2.0], np.float32))])
    got = run(lower(fp32_network(proto), "fp16"), {"x": np.array([1.0, 3.0], np.float32)})["y"]
    np.testing.assert_array_equal(got, [65504.0, -6.0])


# -- structure: kept layers, shared weights, shape math ---------------------------------------------
def test_kept_layers_run_fp32_between_explicit_casts_and_shared_weights_are_copied():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    proto = model([helper.make_node("MatMul", ["x", "W"], ["s"], name="scores"),
                   helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
                   helper.make_node("Einsum", ["p", "W"], ["e"], name="einsum", equation="ij,jk->ik"),
                   helper.make_node("Add", ["e", "s"], ["y"], name="add")],
                  [f32_info("x", [2, 8])], [f32_info("y", [2, 8])], [("W", w)])
    net = fp32_network(proto)
    fp16 = lower(net, "fp16")
    rows = [(l.name, l.op, l.inputs, l.outputs, l.precision) for l in fp16.layers]
    assert rows == [
        ("x/reformat", "Cast", ["x"], ["x/fp16"], "fp16"),
        ("scores", "MatMul", ["x/fp16", "W/fp16"], ["s"], "fp16"),
        ("s/reformat", "Cast", ["s"], ["s/fp32"], "fp16"),
        ("softmax", "Softmax", ["s/fp32"], ["p"], "fp32"),
        ("einsum", "Einsum", ["p", "W"], ["e"], "fp32"),
        ("e/reformat", "Cast", ["e"], ["e/fp16"], "fp16"),
        ("add", "Add", ["e/fp16", "s"], ["y/fp16"], "fp16"),
        ("y/reformat", "Cast", ["y/fp16"], ["y"], "fp16")]
    casts = {l.name: (l.attrs, l.source_nodes) for l in fp16.layers if l.op == "Cast"}
    assert casts["x/reformat"] == ({"to": TensorProto.FLOAT16}, ["x"])
    assert casts["s/reformat"] == ({"to": TensorProto.FLOAT}, ["scores"])
    assert casts["y/reformat"] == ({"to": TensorProto.FLOAT}, ["add"])
    assert fp16.weights["W"].dtype == np.float32 and fp16.weights["W/fp16"].dtype == np.float16
    assert net.weights["W"].dtype == np.float32                              # the fp32 network is untouched
    assert {l.precision for l in net.layers} == {"fp32"}

    x = rng.standard_normal((2, 8)).astype(np.float32)
    got = run(fp16, {"x": x}, keep={"s", "p"})
    assert (got["s"].dtype, got["p"].dtype, got["y"].dtype) == (np.float16, np.float32, np.float32)
    np.testing.assert_allclose(got["p"], _softmax(got["s"].astype(np.float32)), rtol=1e-6)  # fp32 math on fp16 s
    np.testing.assert_allclose(got["y"], run(net, {"x": x})["y"], rtol=1e-2, atol=1e-2)


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_integer_shape_math_is_untouched_and_parameter_inputs_keep_float32():
    scales = np.array([1, 1, 2, 2], np.float32)
    proto = model([helper.make_node("Resize", ["x", "", "scales"], ["r"], name="resize", mode="nearest"),
                   helper.make_node("Shape", ["r"], ["shape"], name="shape"),
                   helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0),
                   helper.make_node("Concat", ["batch", "minus_one"], ["flat_shape"], name="flat_shape", axis=0),
                   helper.make_node("Reshape", ["r", "flat_shape"], ["y"], name="flatten")],
                  [f32_info("x", [1, 2, 3, 3])], [f32_info("y", [1, 72])],
                  [("scales", scales), ("zero", np.array([0], np.int64)), ("minus_one", np.array([-1], np.int64))])
    net = fp32_network(proto)
    bf16 = lower(net, "bf16")
    layers = {l.name: l for l in bf16.layers}
    assert [l.name for l in bf16.layers if l.op == "Cast"] == ["x/reformat", "y/reformat"]
    assert layers["resize"].inputs == ["x/bf16", "", "scales"] and bf16.weights["scales"].dtype == np.float32
    for name in ("shape", "batch", "flat_shape"):          # integer layers: same inputs, nothing inserted
        assert layers[name].inputs == next(l for l in net.layers if l.name == name).inputs
    assert layers["flatten"].inputs == ["r", "flat_shape"] and layers["flatten"].precision == "bf16"
    x = np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3)
    got = run(bf16, {"x": x}, keep={"r"})
    assert got["r"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got["y"], run(net, {"x": x})["y"])   # small integers are exact in bf16


def test_fp32_changes_nothing_and_unknown_precision_is_refused(tiny_model):
    net = fp32_network(tiny_model, batch_size=2)
    layers, weights = assign_precision(net.layers, net.weights, net.inputs, net.outputs, "fp32")
    assert [(l.name, l.inputs, l.outputs) for l in layers] == [(l.name, l.inputs, l.outputs) for l in net.layers]
    assert all(weights[k] is v for k, v in net.weights.items())
    with pytest.raises(BuildError, match="fp8"):
        assign_precision(net.layers, net.weights, net.inputs, net.outputs, "fp8")


# -- models ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    images, labels = digits_test()
    net = fp32_network(digits_model_path(), batch_size=len(images))
    return net, images, labels, accuracy(run(net, {"input": images})["logits"], labels)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_digits_low_precision_keeps_accuracy(digits, precision):
    net, images, labels, fp32_accuracy = digits
    dtype, enum = LOW[precision]
    low = lower(net, precision)
    first, last = low.layers[0], low.layers[-1]
    assert (first.name, first.op, first.inputs, first.attrs, first.source_nodes, first.precision) == (
        "input/reformat", "Cast", ["input"], {"to": enum}, ["input"], precision)
    assert (last.name, last.op, last.outputs, last.attrs) == (
        "logits/reformat", "Cast", ["logits"], {"to": TensorProto.FLOAT})
    assert [l.op for l in low.layers if l.op == "Cast"] == ["Cast", "Cast"]
    assert {l.precision for l in low.layers} == {precision}
    assert {w.dtype for w in low.weights.values()} == {dtype}
    assert [(s.name, s.dtype) for s in low.inputs + low.outputs] == [("input", np.float32), ("logits", np.float32)]

    engine = Engine(low)
    out = engine.create_context().run({"input": images}, keep={"relu1", "fc1"})
    assert out["logits"].dtype == np.float32
    assert out["relu1"].dtype == dtype and out["fc1"].dtype == dtype
    got = accuracy(out["logits"], labels)
    assert abs(got - fp32_accuracy) <= 0.002, (precision, got, fp32_accuracy)
    again = Engine.load(engine.to_bytes()).create_context().run({"input": images})["logits"]
    np.testing.assert_array_equal(again, out["logits"])     # the plan keeps low weights and Cast layers


def test_resnet18_fp16_and_tf32_close_to_fp32():
    net = fp32_network(zoo.resnet18(seed=0, batch=1, image_size=64))
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    want = run(net, {"input": x})["logits"].astype(np.float64)
    for precision in ("fp16", "tf32"):
        got = run(lower(net, precision), {"input": x})["logits"]
        assert got.dtype == np.float32
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert 0 < rel < 1e-2, (precision, rel)
