"""Shared fixtures: small real ONNX models built with onnx.helper, and the reference runner."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def tiny_cnn(batch="N", seed=0) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: small, but a real CNN graph."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.b"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc.w"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc.b")]
    nodes = [helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def ort_run(model: onnx.ModelProto, feeds: dict) -> dict:
    import onnxruntime as ort
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def int8_engine_pair(model: onnx.ModelProto, image_size: int):
    """(fused, as written): CPU int8 engines of `model` (input "x", 3 channels), min-max calibrated on
    three batches of 4, with the integer layer fusion and without it (the Q/DQ graph's numbers)."""
    import workbench as wb
    graph, _ = wb.optimize(wb.load(model))
    rng = np.random.default_rng(1)
    data = [{"x": rng.standard_normal((4, 3, image_size, image_size)).astype(np.float32)} for _ in range(3)]

    def build(fuse: bool):
        return wb.build(graph, wb.BuilderConfig(precision="int8", calibration_data=data, calibrator="minmax",
                                                batch_size=4, int8_fusion=fuse))
    return build(True), build(False)


@pytest.fixture
def tiny_model() -> onnx.ModelProto:
    return tiny_cnn()


def digits_study(calibration_images: int = 100):
    """(optimized digits graph, top-1 % of an engine on the test split, calibration feeds): what
    the accuracy tools (sensitivity, AMP) are tested on."""
    import workbench as wb
    from workbench.evaluate.datasets import digits_model_path, digits_test, digits_train
    from workbench.evaluate.metrics import accuracy, predict
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    images, labels = digits_test()
    train, _ = digits_train(limit=calibration_images)

    def top1(engine) -> float:
        return 100 * accuracy(predict(engine, images, 40), labels)
    return graph, top1, [{"input": train}]
