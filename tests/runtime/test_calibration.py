"""Post-training INT8 on the bundled digits CNN: Q/DQ structure, accuracy per calibrator, the
integer arithmetic the Q/DQ graph stands for (checked by hand), onnxruntime agreement, the cache."""
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from conftest import rel_l2, tiny_cnn
from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
from workbench.evaluate.metrics import accuracy, predict
from workbench.runtime import calibration as ptq
from workbench.quant.errors import CalibrationError, QuantizationError
from workbench.quant.insert_qdq import DECISIONS_KEY, calibration_tensors, insert_qdq, plan_qdq
from workbench.runtime.calibration import calibrate_graph, quantize_int8
from workbench.quant.table import CalibrationTable, model_hash

PROFILE = (1, 32, 64)
DIGITS_TENSORS = ["normalize", "relu1", "pool", "flatten", "relu4"]


@pytest.fixture(scope="module")
def graph():
    return wb.load(digits_model_path())


@pytest.fixture(scope="module")
def batches():
    images, _ = digits_train(limit=500)
    return [{"input": images[i:i + 50]} for i in range(0, len(images), 50)]


@pytest.fixture(scope="module")
def fp32_accuracy(graph):
    images, labels = digits_test()
    return accuracy(predict(wb.build(graph, wb.BuilderConfig(profile=PROFILE)), images, 64), labels)


@pytest.fixture(scope="module")
def entropy_int8(graph, batches):
    return quantize_int8(graph, batches, calibrator="entropy")


def test_calibration_tensors_are_the_compute_inputs(graph):
    assert calibration_tensors(graph) == DIGITS_TENSORS


def test_insert_qdq_structure(graph, entropy_int8):
    before = graph.to_proto().SerializeToString()
    qgraph, table = entropy_int8
    insert_qdq(graph, table)
    assert graph.to_proto().SerializeToString() == before          # the input is untouched
    onnx.checker.check_model(qgraph.to_proto(), full_check=True)
    wb.load(qgraph.to_proto())
    nodes = {n.name: n for n in qgraph.nodes}
    q, dq, wdq = nodes["conv1/input_q"], nodes["conv1/input_dq"], nodes["conv1/weight_dq"]
    assert [v.name for v in q.inputs][0] == "normalize" and nodes["conv1"].inputs[0] is dq.outputs[0]
    assert float(q.inputs[1].const_value.numpy()) == np.float32(table.scales["normalize"])
    assert q.inputs[2].const_value.numpy().dtype == np.int8 and q.inputs[2].const_value.numpy() == 0
    assert nodes["conv1"].inputs[1] is wdq.outputs[0] and wdq.attributes["axis"].value == 0
    assert nodes["fc1/weight_dq"].attributes["axis"].value == 0      # Gemm transB=1: B is [N, K]
    inits = qgraph.initializers
    for w, channels in [("conv1.weight", 16), ("conv2.weight", 32), ("conv3.weight", 32), ("fc1.weight", 64),
                        ("fc2.weight", 10)]:
        assert w not in inits                                         # the model holds int8 weights only
        assert inits[f"{w}_quantized"].const_value.numpy().dtype == np.int8
        assert inits[f"{w}_scale"].const_value.numpy().shape == (channels,)
    assert all(inits[f"{b}.bias"].const_value.numpy().dtype == np.float32 for b in ("conv1", "fc2"))
    assert qgraph.op_counts()["QuantizeLinear"] == 5 and qgraph.op_counts()["DequantizeLinear"] == 10
    assert all(d.quantized for d in qgraph.model.meta[DECISIONS_KEY])


@pytest.mark.parametrize("calibrator,tolerance", [("minmax", 1.0), ("entropy", 0.5), ("percentile", 1.0)])
def test_int8_accuracy_close_to_fp32(graph, batches, fp32_accuracy, entropy_int8, calibrator, tolerance):
    qgraph, table = entropy_int8 if calibrator == "entropy" else quantize_int8(graph, batches,
                                                                               calibrator=calibrator)
    assert table.calibrator["name"] == calibrator and table.num_samples == 500
    images, labels = digits_test()
    int8 = accuracy(predict(wb.build(qgraph, wb.BuilderConfig(profile=PROFILE)), images, 64), labels)
    print(f"{calibrator}: int8 {100 * int8:.2f}% vs fp32 {100 * fp32_accuracy:.2f}%")
    assert 100 * (fp32_accuracy - int8) <= tolerance


def test_qdq_conv_is_exact_integer_arithmetic(graph, entropy_int8):
    """conv2 of the Q/DQ graph = s_x * s_w[o] * (exact int64 sum of int8 products) + b[o]."""
    qgraph, table = entropy_int8
    images, _ = digits_test(limit=16)
    got = wb.build(qgraph, wb.BuilderConfig(batch_size=16)).create_context().run(
        {"input": images}, keep={"relu1", "conv2"})
    x, y = got["relu1"], got["conv2"]
    w = numpy_helper.to_array(next(t for t in graph.to_proto().graph.initializer if t.name == "conv2.weight"))
    b = numpy_helper.to_array(next(t for t in graph.to_proto().graph.initializer if t.name == "conv2.bias"))
    s_x = np.float32(table.scales["relu1"])
    s_w = (np.abs(w).max(axis=(1, 2, 3)) / np.float32(127)).astype(np.float32)
    q_x = np.clip(np.rint(x / s_x), -128, 127).astype(np.int64)                  # rint: half to even
    q_w = np.clip(np.rint(w / s_w[:, None, None, None]), -127, 127).astype(np.int64)
    np.testing.assert_array_equal(q_w, qgraph.initializers["conv2.weight_quantized"].const_value.numpy())
    patches = np.lib.stride_tricks.sliding_window_view(np.pad(q_x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3),
                                                       axis=(2, 3))             # [n, c, h, w, 3, 3]
    acc = np.einsum("nchwij,ocij->nohw", patches, q_w)                           # exact, int64
    want = acc * (np.float64(s_x) * s_w.astype(np.float64))[None, :, None, None] + b[None, :, None, None]
    assert np.abs(y - want).max() / np.abs(want).max() < 1e-6
    assert rel_l2(y, want) < 1e-6


def ort_unfused(model: onnx.ModelProto, feeds: dict, extra_outputs=()) -> dict:
    """onnxruntime running the Q/DQ nodes as written. Its default graph optimizations fuse DQ -> Conv -> Q
    into QLinearConv, whose AVX2 u8s8 kernels saturate int16 pair sums (ORT's documented reason for
    `reduce_range`): not a reference for exact INT8 arithmetic."""
    import onnxruntime as ort
    model = onnx.ModelProto.FromString(model.SerializeToString())
    infos = {v.name: v for v in model.graph.value_info}
    model.graph.output.extend(infos[name] for name in extra_outputs)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_digits_qdq_matches_onnxruntime(entropy_int8):
    """Both runtimes compute each float value to ~1e-7 (ours accumulates Conv in float64, onnxruntime in
    float32), so an int8 value can differ by one level where x / s lands that close to a rounding
    boundary; the difference then propagates. So: int8 tensors agree to one level on a tiny fraction of
    elements, and logits agree to 1e-4 (rel L2) on every image whose int8 tensors all agree."""
    qgraph, _ = entropy_int8
    images, _ = digits_test()
    quantized = [f"{t}_quantized" for t in DIGITS_TENSORS]
    engine = wb.build(qgraph, wb.BuilderConfig(profile=(1, 64, len(images))))
    ours = engine.create_context().run({"input": images}, keep=set(quantized))
    ref = ort_unfused(qgraph.to_proto(), {"input": images}, quantized)
    flipped = np.zeros(len(images), bool)
    for name in quantized:
        diff = np.abs(ours[name].astype(np.int32) - ref[name].astype(np.int32)).reshape(len(images), -1)
        assert diff.max() <= 1 and np.mean(diff) < 1e-3, name
        flipped |= diff.any(axis=1)
    print(f"onnxruntime: {flipped.sum()} of {len(images)} images have an int8 value one level apart")
    assert flipped.mean() < 0.05
    assert rel_l2(ours["logits"][~flipped], ref["logits"][~flipped]) < 1e-4
    assert rel_l2(ours["logits"], ref["logits"]) < 1e-3
    np.testing.assert_array_equal(ours["logits"].argmax(1), ref["logits"].argmax(1))


def test_matmul_and_gemm_weights_quantized_per_output_column():
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "mm.w"),
             numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "fc.w")]
    nodes = [helper.make_node("MatMul", ["x", "mm.w"], ["h"], name="mm"),
             helper.make_node("Gemm", ["h", "fc.w"], ["y"], name="fc")]     # transB = 0: B is [K, N]
    model = helper.make_model(helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    graph = wb.load(model)
    x = rng.standard_normal((20, 8)).astype(np.float32)
    qgraph, _ = quantize_int8(graph, [{"x": x[:8]}, {"x": x[8:]}], calibrator="minmax")   # batches 8, 12
    nodes = {n.name: n for n in qgraph.nodes}
    assert nodes["mm/weight_dq"].attributes["axis"].value == 1
    assert nodes["fc/weight_dq"].attributes["axis"].value == 1
    assert qgraph.initializers["fc.w_scale"].const_value.numpy().shape == (4,)
    ours = wb.build(qgraph, wb.BuilderConfig(profile=(1, 20, 20))).create_context().run({"x": x})["y"]
    assert rel_l2(ours, ort_unfused(qgraph.to_proto(), {"x": x})["y"]) < 1e-5


def test_opset_before_13_gets_one_weight_scale():
    model = tiny_cnn()
    model.opset_import[0].version = 11                   # DequantizeLinear-10: per-tensor scales only
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    qgraph, _ = quantize_int8(wb.load(model), [{"input": x}], calibrator="minmax")
    onnx.checker.check_model(qgraph.to_proto(), full_check=True)
    dqs = [n for n in qgraph.nodes if n.op_type == "DequantizeLinear"]
    # conv: input, weight; the pool's input (its output feeds the quantized fc); fc: input, weight
    assert len(dqs) == 5 and not any("axis" in n.attributes for n in dqs)
    assert qgraph.initializers["conv.w_scale"].const_value.numpy().shape == ()
    model.opset_import[0].version = 9
    with pytest.raises(QuantizationError, match="opset 9 has no QuantizeLinear"):
        quantize_int8(wb.load(model), [{"input": x}])


def test_fused_graph_is_quantized_too(graph, batches):
    optimized, _ = wb.optimize(graph)
    qgraph, table = quantize_int8(optimized, batches[:2])
    counts = qgraph.op_counts()
    assert counts["QuantizeLinear"] == 5 and counts["workbench::FusedConv"] == 3
    assert qgraph.model.meta[DECISIONS_KEY][0].op == "FusedConv"
    onnx.checker.check_model(qgraph.to_proto(), full_check=True)


def test_calibrate_graph_batches_one_dict_and_reports_progress(graph):
    images, _ = digits_train(limit=130)
    seen = []
    table = calibrate_graph(graph, {"input": images}, "minmax", batch_size=50,
                            progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and table.num_samples == 130
    assert sorted(table.scales) == sorted(DIGITS_TENSORS)


def test_cache_is_read_back_without_calibrating(graph, batches, tmp_path, monkeypatch, caplog):
    path = tmp_path / "digits.calib.json"
    _, first = quantize_int8(graph, batches[:2], calibrator="minmax", cache=path)
    assert path.is_file()

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrate ran although the cache holds this model's table")

    monkeypatch.setattr(ptq, "calibrate", no_calibration)
    with caplog.at_level(logging.INFO, logger="workbench.runtime.calibration"):
        again = calibrate_graph(graph, batches, "minmax", cache=path)
        qgraph, table = quantize_int8(graph, cache=path, calibrator="minmax")    # no data: the cache suffices
    assert f"calibration cache hit: {path}" in caplog.text
    assert again.scales == first.scales == table.scales
    assert qgraph.op_counts()["QuantizeLinear"] == 5


def test_cache_of_another_model_is_refused(graph, batches, tmp_path):
    path = tmp_path / "calib.json"
    calibrate_graph(graph, batches[:1], "minmax", cache=path)
    tiny = wb.load(tiny_cnn())
    with pytest.raises(CalibrationError) as info:
        calibrate_graph(tiny, [{"input": np.zeros((2, 3, 8, 8), np.float32)}], cache=path)
    message = str(info.value)
    assert model_hash(graph.to_proto()) in message and model_hash(tiny.to_proto()) in message


def test_empty_or_missing_data_says_what_to_provide(graph):
    with pytest.raises(CalibrationError, match="empty.*provide an iterable of feed dicts"):
        calibrate_graph(graph, [])
    with pytest.raises(CalibrationError, match="empty.*provide"):
        calibrate_graph(graph, (feed for feed in []))
    with pytest.raises(CalibrationError, match="INT8 needs calibration data or a QDQ model.*provide"):
        quantize_int8(graph)


def test_qdq_model_is_returned_unchanged(entropy_int8, batches):
    qgraph, table = entropy_int8
    same, explicit = quantize_int8(qgraph)
    assert same.to_proto().SerializeToString() == qgraph.to_proto().SerializeToString()
    assert explicit.calibrator["name"] == "explicit"
    assert explicit.scales == {k: float(np.float32(v)) for k, v in table.scales.items()}
    again = insert_qdq(qgraph, table)                                  # nothing left to quantize
    assert again.op_counts() == qgraph.op_counts()
    assert all("explicitly quantized" in d.reason for d in plan_qdq(qgraph, table))


def test_missing_scale_skips_the_node_and_existing_qdq_wins(graph, batches, caplog):
    full = quantize_int8(graph, batches[:2], calibrator="minmax")[1]
    partial = CalibrationTable(full.model_hash, full.calibrator, full.num_samples,
                               {k: v * 2 for k, v in full.scales.items() if k != "relu4"}, {})
    with caplog.at_level(logging.WARNING, logger="workbench.quant.insert_qdq"):
        qgraph = insert_qdq(graph, partial)
    assert "fc2 (no scale for ['relu4']" in caplog.text
    assert [d.node for d in qgraph.model.meta[DECISIONS_KEY] if not d.quantized] == ["fc2"]
    assert "fc2.weight" in qgraph.initializers                          # fc2 stays float
    completed, _ = quantize_int8(qgraph, batches[:2], calibrator="minmax")   # only fc2 is calibrated now
    inits = completed.initializers
    assert completed.op_counts()["QuantizeLinear"] == 5
    assert float(inits["relu1_scale"].const_value.numpy()) == np.float32(partial.scales["relu1"])
    assert "fc2.weight_quantized" in inits and "relu4_scale" in inits
