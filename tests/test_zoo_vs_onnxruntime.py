"""Whole models on the CPU engine against onnxruntime (the independent reference):
the nine light zoo graphs onnx ships (weights made random) and our own zoo builders."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from conftest import ort_run, rel_l2

import workbench as wb
from workbench.evaluate.zoo.light import LIGHT_MODELS, light_model

TOLERANCE = 1e-4


def _compare(model: onnx.ModelProto, feeds: dict, config: wb.BuilderConfig | None = None) -> None:
    want = ort_run(model, feeds)
    config = dataclasses.replace(config or wb.BuilderConfig(), tactic_sources=["numpy"])   # the oracle's kernels
    got = wb.build(wb.load(model), config).create_context().run(feeds)
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        assert got[name].dtype == want[name].dtype, name
        error = rel_l2(got[name], want[name])
        assert error <= TOLERANCE, f"{name}: relative L2 {error:.2e} > {TOLERANCE}"
        assert np.std(want[name]) > 1e-5, f"{name}: degenerate reference output"


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_zoo_model_matches_onnxruntime(name):
    model = light_model(name, seed=0)
    inits = {t.name for t in model.graph.initializer}
    data = next(v for v in model.graph.input if v.name not in inits)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    _compare(model, {data.name: x})


def _image_feeds(batch, size=224):
    return {"input": np.random.default_rng(2).standard_normal((batch, 3, size, size)).astype(np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("builder,kwargs,batch,size", [
    ("resnet18", {}, 2, 224),
    ("resnet50", {}, 1, 224),
    ("mobilenet_v2", {}, 2, 224),
    ("googlenet", {}, 1, 224),
])
def test_zoo_cnn_matches_onnxruntime(builder, kwargs, batch, size):
    from workbench.evaluate import zoo
    model = getattr(zoo, builder)(seed=0, **kwargs)
    _compare(model, _image_feeds(batch, size), wb.BuilderConfig(batch_size=batch))


def test_inception_block_matches_onnxruntime():
    from workbench.evaluate import zoo
    model = zoo.inception_block(seed=0)
    feeds = {model.graph.input[0].name: np.random.default_rng(3).standard_normal((2, 192, 28, 28)).astype(np.float32)}
    _compare(model, feeds, wb.BuilderConfig(batch_size=2))


@pytest.mark.parametrize("seq_len", [16, "S"])
def test_bert_matches_onnxruntime(seq_len):
    from workbench.evaluate import zoo
    model = zoo.bert(layers=2, hidden=64, heads=4, seq_len=seq_len, seed=0)
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 1000, (3, 16), dtype=np.int64)
    mask = np.ones((3, 16), np.int64)
    mask[1, 10:] = 0
    mask[2, 5:] = 0
    shapes = None if seq_len == 16 else {"input_ids": (3, 16), "attention_mask": (3, 16)}
    _compare(model, {"input_ids": ids, "attention_mask": mask},
             wb.BuilderConfig(batch_size=3) if shapes is None else wb.BuilderConfig(input_shapes=shapes))


def test_mlp_matches_onnxruntime():
    from workbench.evaluate import zoo
    model = zoo.mlp(seed=0)
    x = np.random.default_rng(5).standard_normal((7, 64)).astype(np.float32)
    _compare(model, {model.graph.input[0].name: x}, wb.BuilderConfig(profile=(1, 7, 16)))


def test_explicit_qdq_conv_matches_onnxruntime():
    """QuantizeLinear/DequantizeLinear around a Conv, as quantization-aware training exports it."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(6)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    w_scale = (np.abs(w).reshape(8, -1).max(axis=1) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w_scale, "w_scale"),
             numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
             numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(3, np.uint8), "x_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="dq_x"),
             helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], name="q_w", axis=0),
             helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], name="dq_w", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 10, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    _compare(model, {"x": rng.uniform(-0.5, 4, (2, 4, 10, 10)).astype(np.float32)})
