"""int8 inside mixed precision: Q/DQ for the chosen nodes only (checked with onnxruntime), allowed sets
and overrides with int8 on the digits model's real test split, calibration only when needed."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import ort_run
from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
from workbench.evaluate.metrics import accuracy, predict
from workbench.quant.insert_qdq import DECISIONS_KEY, insert_qdq
from workbench.quant.partial_qdq import insert_qdq_only
from workbench.runtime.calibration import calibrate_graph, quantize_int8

QUANTIZED = {"conv1+relu1", "conv2+relu2", "conv3+relu3", "fc1+relu4", "fc2"}


@pytest.fixture(scope="module")
def digits():
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    images, labels = digits_test()
    train, _ = digits_train(limit=200)
    data = [{"input": train[i:i + 50]} for i in range(0, 200, 50)]
    fp32 = top1(wb.build(graph, wb.BuilderConfig(batch_size=40, builder_level=0)), images, labels)
    return graph, images, labels, data, fp32


def top1(engine, images, labels) -> float:
    return 100 * accuracy(predict(engine, images, 40), labels)


def two_convs_sharing_input() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), name)
             for name in ("wa", "wb")]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="conv_b", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4, 6, 6]) for n in "ab"], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_partial_qdq_quantizes_only_the_chosen_node_of_a_shared_input():
    model = two_convs_sharing_input()
    graph = wb.load(model)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    table = calibrate_graph(graph, [{"x": x}], "minmax")
    partial = insert_qdq_only(graph, table, keep={"a"})
    nodes = {n.name: n for n in partial.ir_graph}
    assert [n.inputs[0].name for n in (nodes["conv_a"], nodes["conv_b"])] == ["x_dequantized", "x"]
    assert nodes["conv_b"].inputs[1].name == "wb"
    assert sorted(n.op_type for n in partial.ir_graph).count("DequantizeLinear") == 2    # x and wa only
    assert {d.node: d.reason for d in partial.model.meta[DECISIONS_KEY]}["conv_b"] == \
        "kept in float by the precision choice"
    got = ort_run(partial.to_proto(), {"x": x})
    np.testing.assert_allclose(got["b"], ort_run(model, {"x": x})["b"], rtol=1e-5, atol=1e-5)
    full = ort_run(insert_qdq(graph, table).to_proto(), {"x": x})
    np.testing.assert_allclose(got["a"], full["a"], rtol=1e-6, atol=1e-6)


def test_strict_set_with_int8_keeps_accuracy_and_puts_int8_on_every_quantizable_layer(digits):
    graph, images, labels, data, fp32 = digits
    engine = wb.build(graph, wb.BuilderConfig(batch_size=40, precision={"fp16", "int8"}, strict=True,
                                              calibration_data=data, builder_level=0))
    by_name = {l.name: l.precision for l in engine.layers}
    assert {n for n, p in by_name.items() if p == "int8" and "/" not in n} == QUANTIZED
    assert by_name["pool"] == by_name["normalize"] == "fp16"
    assert fp32 - top1(engine, images, labels) <= 0.5


def test_int8_override_quantizes_that_layer_alone(digits):
    graph, images, labels, data, fp32 = digits
    engine = wb.build(graph, wb.BuilderConfig(batch_size=40, layer_precisions={"conv2": "int8"},
                                              calibration_data=data, builder_level=0))
    qdq = [l.name for l in engine.layers if l.op in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and all(name.startswith("conv2+relu2/") for name in qdq)
    assert {l.name for l in engine.layers if l.precision == "int8" and l.op not in ("QuantizeLinear",
                                                                                   "DequantizeLinear")} == {"conv2+relu2"}
    assert abs(fp32 - top1(engine, images, labels)) <= 1.0


def test_no_calibration_when_no_layer_chooses_int8(digits):
    graph, images, labels, _, fp32 = digits

    def never():
        raise AssertionError("calibration data was read")
        yield
    keep_float = {"op:FusedConv": "fp32", "op:FusedGemm": "fp32", "op:Gemm": "fp32"}
    engine = wb.build(graph, wb.BuilderConfig(batch_size=40, precision="int8", layer_precisions=keep_float,
                                              calibration_data=never(), builder_level=0))
    assert all(l.precision == "fp32" for l in engine.layers)
    assert top1(engine, images, labels) == fp32


def test_explicitly_quantized_model_keeps_its_int8_layers_in_a_set(digits):
    graph, images, labels, data, fp32 = digits
    qgraph, _ = quantize_int8(graph, data, calibrator="entropy")
    engine = wb.build(qgraph, wb.BuilderConfig(batch_size=40, precision={"fp16", "int8"}, strict=True,
                                               builder_level=0))
    report = engine.precision_report().set_index("layer")
    assert report.loc["conv2+relu2", "precision"] == "int8"
    assert "explicitly quantized" in report.loc["conv2+relu2", "precision_reason"]
    assert report.loc["pool", "precision"] == "fp16"
    assert fp32 - top1(engine, images, labels) <= 0.5
