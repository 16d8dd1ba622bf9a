"""The zoo builders make valid, runnable, numerically alive models, and the bundled digits
CNN still scores what its metadata says. onnxruntime is the independent judge here;
engine-vs-onnxruntime comparisons live elsewhere."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from workbench.evaluate import datasets, zoo

ort = pytest.importorskip("onnxruntime")


def _run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _image(batch: int, channels: int, size: int) -> dict:
    return {"input": np.random.default_rng(1).standard_normal((batch, channels, size, size)).astype(np.float32)}


def _bert_feeds(batch: int, seq: int) -> dict:
    rng = np.random.default_rng(2)
    mask = np.ones((batch, seq), np.int64)
    mask[1, seq // 2:] = 0
    return {"input_ids": rng.integers(0, 1000, (batch, seq), dtype=np.int64), "attention_mask": mask}


CASES = {   # id: (builder, kwargs, feeds)
    "resnet18_224_b1": ("resnet18", {"batch": 1}, _image(1, 3, 224)),
    "resnet50_64": ("resnet50", {"image_size": 64}, _image(2, 3, 64)),
    "mobilenet_v2_96": ("mobilenet_v2", {"image_size": 96}, _image(2, 3, 96)),
    "googlenet_64": ("googlenet", {"image_size": 64}, _image(2, 3, 64)),
    "inception_3a": ("inception_block", {}, _image(2, 192, 28)),
    "bert_seq16": ("bert", {}, _bert_feeds(2, 16)),
    "bert_symbolic_seq": ("bert", {"seq_len": "S", "layers": 1, "heads": 4}, _bert_feeds(3, 11)),
    "mlp": ("mlp", {}, {"input": np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)}),
    "mlp_softmax": ("mlp", {"softmax": True, "batch": 2},
                    {"input": np.random.default_rng(4).random((2, 64), np.float32)}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_zoo_model_is_valid_and_alive(case):
    builder, kwargs, feeds = CASES[case]
    model = zoo.ZOO[builder](seed=0, **kwargs)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8 and [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names), "node names must be unique and non-empty"
    assert {t.data_type for t in model.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    batch = kwargs.get("batch", "N")
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert (dim.dim_value if isinstance(batch, int) else dim.dim_param) == batch

    for name, out in _run(model, feeds).items():
        assert np.isfinite(out).all(), name
        assert out.std() > 1e-3, f"{name}: degenerate output (std {out.std():.2e})"
        assert np.abs(out).max() < 1e3, f"{name}: activations blew up"
        if len(out) > 1:
            assert np.abs(out[0] - out[1]).max() > 1e-4, f"{name}: identical across batch items"


def test_builders_are_seeded():
    a, b, c = zoo.mlp(seed=0), zoo.mlp(seed=0), zoo.mlp(seed=1)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.graph.initializer[0].raw_data != c.graph.initializer[0].raw_data
    assert set(zoo.ZOO) == {"resnet18", "resnet50", "mobilenet_v2", "googlenet", "inception_block", "bert", "mlp"}


def test_structure_matches_what_passes_expect():
    ops = collections.Counter(n.op_type for n in zoo.resnet18(image_size=32, num_classes=10).graph.node)
    assert ops["BatchNormalization"] == 20 and ops["Conv"] == 20 and ops["Add"] == 8   # BN not folded
    mobilenet = zoo.mobilenet_v2(image_size=32, num_classes=10).graph.node
    ops = collections.Counter(n.op_type for n in mobilenet)
    assert ops["Clip"] == 35 and ops["Add"] == 10
    dw = [n for n in mobilenet if n.name.endswith(".dw_conv")]
    assert len(dw) == 17 and all(next(a.i for a in n.attribute if a.name == "group") > 1 for n in dw)

    block = zoo.inception_block()
    consumers = [n.name for n in block.graph.node if "input" in n.input]
    assert sorted(consumers) == ["inception_3a/1x1", "inception_3a/3x3_reduce", "inception_3a/5x5_reduce",
                                 "inception_3a/pool"]
    by_name = {n.name: n for n in block.graph.node}
    assert by_name["inception_3a/output"].op_type == "Concat" and len(by_name["inception_3a/1x1"].input) == 3
    assert "inception_3a/relu_3x3" in by_name
    assert sum(n.op_type == "Concat" for n in zoo.googlenet(image_size=32, num_classes=10).graph.node) == 9

    bert_ops = {n.op_type for n in zoo.bert(layers=1).graph.node}
    assert {"Where", "Expand", "LayerNormalization", "Erf", "Softmax", "Shape", "Slice", "Tanh",
            "Gemm", "Reshape", "Transpose"} <= bert_ops


def test_digits_model_accuracy_matches_metadata():
    images, labels = datasets.digits_test()
    assert images.dtype == np.float32 and images.shape == (360, 1, 8, 8) and labels.dtype == np.int64
    assert images.min() == 0 and images.max() == 16
    path = datasets.digits_model_path()
    assert path.stat().st_size <= 1 << 20
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node[0].op_type in ("Mul", "Div"), "normalisation must be inside the model"
    logits = _run(model, {"input": images})["logits"]
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.97
    meta = datasets.digits_metadata()
    assert accuracy == meta["test_accuracy"] and meta["test_samples"] == len(labels)
    train_images, train_labels = datasets.digits_train(limit=500)
    assert train_images.shape == (500, 1, 8, 8) and len(train_labels) == 500
    assert len(datasets.digits_train()[0]) == meta["train_samples"]


def test_missing_data_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="digits_test.npz"):
        datasets.digits_test()
