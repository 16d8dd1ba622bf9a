"""compare / compare_layers against values computed independently: numpy by hand on a one-Gemm
model whose two versions differ by a known weight delta, onnxruntime on the bundled digits CNN,
and a deliberately corrupted conv weight that compare_layers must point at."""
from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.evaluate.compare import compare, compare_layers, plot_layer_errors
from workbench.evaluate.datasets import digits_model_path, digits_test

COLUMNS = ["output", "max_abs", "rel_l2", "cosine", "sqnr_db", "top1_agreement"]
LAYER_COLUMNS = ["layer", "op", "tensor", "precision", "rel_l2", "max_abs", "cosine", "first_jump"]


def _gemm(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")]
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc")], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def digits():
    images, labels = digits_test()
    graph = wb.load(digits_model_path())
    fp32 = wb.build(graph, wb.BuilderConfig(precision="fp32", profile=(1, 32, 64)))
    batches = [{"input": images[i:i + 64]} for i in range(0, len(images), 64)]
    return graph, fp32, images, labels, batches


def test_engine_against_itself_is_exact(digits):
    _, fp32, _, labels, batches = digits
    df = compare(fp32, fp32, batches, labels=labels)
    assert list(df.columns) == COLUMNS + ["accuracy", "reference.accuracy"]
    row = df.iloc[0]
    assert row["output"] == "logits" and len(df) == 1
    assert row["rel_l2"] == 0 and row["max_abs"] == 0 and row["cosine"] == pytest.approx(1.0)
    assert row["sqnr_db"] == np.inf and row["top1_agreement"] == 1.0
    assert row["accuracy"] == row["reference.accuracy"] > 0.9


def test_known_weight_delta_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    delta = (0.05 * rng.standard_normal((4, 3))).astype(np.float32)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    engine = wb.build(_gemm(w, b))
    reference_model = _gemm(w + delta, b)

    x64 = x.astype(np.float64)
    got, want = x64 @ w + b, x64 @ (w + delta).astype(np.float64) + b
    err = got - want
    expect = {"max_abs": np.abs(err).max(), "rel_l2": np.linalg.norm(err) / np.linalg.norm(want),
              "cosine": np.sum(got * want) / (np.linalg.norm(got) * np.linalg.norm(want)),
              "sqnr_db": 10 * np.log10(np.sum(want ** 2) / np.sum(err ** 2)),
              "top1_agreement": np.mean(got.argmax(1) == want.argmax(1))}
    references = [wb.load(reference_model)]              # fp32 CPU engine
    try:
        import onnxruntime  # noqa: F401
        references.append(reference_model)                # onnxruntime
    except ImportError:
        pass
    for reference in references:
        row = compare(engine, reference, [{"x": x[:10]}, {"x": x[10:]}]).iloc[0]
        assert row["rel_l2"] > 0.01                       # the delta is really visible
        for key, value in expect.items():
            assert row[key] == pytest.approx(value, rel=1e-4), key


def test_onnxruntime_reference_on_digits(digits):
    pytest.importorskip("onnxruntime")
    _, fp32, _, labels, batches = digits
    row = compare(fp32, digits_model_path(), batches, labels=labels).iloc[0]
    assert row["rel_l2"] < 1e-5 and row["top1_agreement"] == 1.0 and row["cosine"] > 0.99999
    assert row["accuracy"] == row["reference.accuracy"]


def test_fp16_vs_fp32_small_nonzero_error(digits):
    graph, fp32, images, labels, batches = digits
    fp16 = wb.build(graph, wb.BuilderConfig(precision="fp16", profile=(1, 32, 64)))
    row = compare(fp16, fp32, batches, labels=labels).iloc[0]
    assert 0 < row["rel_l2"] < 1e-2 and 0 < row["max_abs"] < 0.5
    assert 40 < row["sqnr_db"] < np.inf and row["top1_agreement"] > 0.98
    assert abs(row["accuracy"] - row["reference.accuracy"]) <= 0.02


def test_compare_layers_fp16_vs_fp32(digits):
    graph, fp32, images, _, _ = digits
    fp16 = wb.build(graph, wb.BuilderConfig(precision="fp16", profile=(1, 32, 64)))
    df = compare_layers(fp16, fp32, {"input": images[:32]})
    assert list(df.columns) == LAYER_COLUMNS
    ref_tensors = {t for l in fp32.layers for t in l.outputs if t}
    shared = [t for l in fp16.layers for t in l.outputs if t and t in ref_tensors]
    assert df["tensor"].tolist() == shared and len(shared) == len(ref_tensors)   # execution order, one each
    assert "logits/fp16" not in set(df["tensor"])
    assert df["first_jump"].dtype == bool and df["first_jump"].sum() <= 1
    assert (df["rel_l2"] < 1e-2).all() and df["rel_l2"].iloc[-1] > 0        # fp16 noise, no blow-up
    assert set(df["precision"]) == {"fp16"}
    fig = plot_layer_errors(df)
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes[0].get_yscale() == "log"


def test_compare_layers_finds_corrupted_conv(digits):
    _, fp32, images, _, _ = digits
    weights = dict(fp32.network.weights)
    weights["conv2.weight"] = weights["conv2.weight"] * np.float32(10)
    corrupted = wb.Engine(dataclasses.replace(fp32.network, weights=weights))
    df = compare_layers(corrupted, fp32, {"input": images[:32]})
    assert df.loc[df["first_jump"], "layer"].tolist() == ["conv2"]
    before = df.index[df["layer"] == "conv2"][0]
    assert (df["rel_l2"].iloc[:before] == 0).all()
    assert fp32.network.weights["conv2.weight"] is not weights["conv2.weight"]   # original untouched
    fig = plot_layer_errors(df)
    assert any("conv2" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_bad_reference_and_output_are_named(digits):
    _, fp32, images, _, _ = digits
    with pytest.raises(WorkbenchError, match="reference must be"):
        compare(fp32, 42, {"input": images[:4]})
    with pytest.raises(WorkbenchError, match="not an engine output"):
        compare(fp32, fp32, {"input": images[:4]}, output="nope")
