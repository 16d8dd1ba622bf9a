"""Bad input gets a clear, named error of our own type, and loses nothing."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.errors import (ExternalDataError, InputError, ModelLoadError, UnsupportedOpError,
                              UnsupportedOpsetError)


def test_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(ModelLoadError, match="notes.onnx: not"):
        wb.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model file"):
        wb.load(tmp_path / "absent.onnx")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, tiny_model, keep):
    data = tiny_model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        wb.load(path)


def _model_with(nodes, opset=17, domains=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def test_unknown_onnx_ops_listed_together():
    model = _model_with([helper.make_node("FooOp", ["x"], ["a"], name="first_foo"),
                         helper.make_node("Relu", ["a"], ["b"], name="relu"),
                         helper.make_node("BarOp", ["b"], ["y"], name="the_bar")])
    with pytest.raises(UnsupportedOpError) as info:
        wb.load(model)
    message = str(info.value)
    assert "FooOp (node 'first_foo')" in message and "BarOp (node 'the_bar')" in message
    assert info.value.nodes == [("first_foo", "FooOp"), ("the_bar", "BarOp")]


def test_ops_the_backend_cannot_run_listed_together():
    model = _model_with([helper.make_node("Frobnicate", ["x"], ["a"], name="f1", domain="my.ops"),
                         helper.make_node("Relu", ["a"], ["b"], name="relu"),
                         helper.make_node("Frobnicate", ["b"], ["c"], name="f2", domain="my.ops"),
                         helper.make_node("Twiddle", ["c"], ["y"], name="t1", domain="my.ops")],
                        domains=["my.ops"])
    graph = wb.load(model)
    with pytest.raises(UnsupportedOpError) as info:
        wb.build(graph)
    message = str(info.value)
    assert "3 nodes of 2 op types" in message
    assert "my.ops::Frobnicate: 'f1', 'f2'" in message and "my.ops::Twiddle: 't1'" in message
    assert "plugin" in message


def test_missing_external_data(tmp_path):
    big = np.arange(4096, dtype=np.float32).reshape(64, 64)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                              [numpy_helper.from_array(big, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="ext.weights", size_threshold=0)
    assert wb.load(path).initializers["w"].const_value.numpy().sum() == big.sum()   # the happy path works
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(ExternalDataError, match=r"'w' -> .*ext\.weights"):
        wb.load(path)


@pytest.mark.parametrize("opset", [5, 99])
def test_opset_outside_supported_range(opset):
    with pytest.raises(UnsupportedOpsetError, match=f"opset {opset} .* outside the supported range"):
        wb.load(_model_with([helper.make_node("Relu", ["x"], ["y"], name="r")], opset=opset))


@pytest.fixture
def context(tiny_model):
    return wb.build(wb.load(tiny_model), wb.BuilderConfig(profile=(1, 2, 4))).create_context()


def test_feed_missing(context):
    with pytest.raises(InputError, match=r"missing 'input' \(float32\[\?, 3, 8, 8\]\)"):
        context.run({})


def test_feed_extra(context):
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(InputError, match=r"unexpected \['mask'\]"):
        context.run({"input": x, "mask": x})


def test_feed_wrong_dtype(context):
    with pytest.raises(InputError, match="input 'input': expected dtype float32, got float64"):
        context.run({"input": np.zeros((2, 3, 8, 8))})


def test_feed_wrong_shape(context):
    with pytest.raises(InputError, match=r"input 'input': .*got \(2, 3, 9, 8\) \(dimension 2: expected 8, got 9\)"):
        context.run({"input": np.zeros((2, 3, 9, 8), np.float32)})
    with pytest.raises(InputError, match=r"expected rank 4"):
        context.run({"input": np.zeros((3, 8, 8), np.float32)})


def test_feed_batch_outside_profile(context):
    with pytest.raises(InputError, match=r"batch 5 is outside the engine's profile \[1, 4\]"):
        context.run({"input": np.zeros((5, 3, 8, 8), np.float32)})


def test_nan_and_inf_propagate(context, tiny_model):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x[1, 1, 2, 2] = np.inf
    out = context.run({"input": x})["logits"]
    from conftest import ort_run
    want = ort_run(tiny_model, {"input": x})["logits"]
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    assert np.isnan(out[0]).all() and not np.isfinite(out[1]).all()


def test_shape_inference_failure_names_the_node():
    from workbench.errors import ShapeInferenceError
    graph = helper.make_graph([helper.make_node("Add", ["x", "z"], ["y"], name="add_mismatch")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ShapeInferenceError, match="node name: add_mismatch"):
        wb.load(model)
