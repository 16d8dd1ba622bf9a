"""Graph-level weight-only INT8 and 2:4 pruning on the bundled digits CNN (and a small MatMul/Gemm graph)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.evaluate.metrics import accuracy, predict
from workbench.passes.edit import const_array
from workbench.quant import sparsity
from workbench.quant.graph_weights import is_2to4, prune_2to4, quantize_weights_int8

CONFIG = dict(profile=(1, 32, 64))
WEIGHTS = ["conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight"]


def _build(graph):
    return wb.build(graph, wb.BuilderConfig(**CONFIG))


def _snapshot(graph):
    return graph.to_proto().SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def graph():
    return wb.load(digits_model_path())


@pytest.fixture(scope="module")
def data():
    return digits_test()


@pytest.fixture(scope="module")
def fp32(graph, data):
    engine = _build(graph)
    return engine, accuracy(predict(engine, *data[:1], 32), data[1])


@pytest.fixture(scope="module")
def weight_only(graph):
    before = _snapshot(graph)
    qgraph, report = quantize_weights_int8(graph)
    assert _snapshot(graph) == before, "the input graph was modified"
    return qgraph, report


@pytest.fixture(scope="module")
def pruned(graph):
    before = _snapshot(graph)
    sgraph, report = prune_2to4(graph)
    assert _snapshot(graph) == before, "the input graph was modified"
    return sgraph, report


# -- weight-only INT8 ------------------------------------------------------------------------------

def test_weight_only_structure_and_report(graph, weight_only):
    qgraph, report = weight_only
    onnx.checker.check_model(qgraph.to_proto(), full_check=True)
    assert list(report.columns) == ["tensor", "node", "shape", "fp32_bytes", "int8_bytes", "max_abs_error"]
    assert report["tensor"].tolist() == WEIGHTS
    inits = qgraph.initializers
    assert not set(WEIGHTS) & set(inits), "float weights must be gone"
    for node in qgraph.nodes:
        if node.op_type in ("Conv", "Gemm"):
            dq = node.inputs[1].producer()
            assert dq.op_type == "DequantizeLinear" and dq.attributes["axis"].value == 0
            assert dq.inputs[0].const_value.numpy().dtype == np.int8
            assert node.inputs[0].producer() is None or node.inputs[0].producer().op_type != "DequantizeLinear"
    assert qgraph.op_counts()["DequantizeLinear"] == 5 and "QuantizeLinear" not in qgraph.op_counts()
    for row in report.itertuples():
        w = const_array(graph.initializers[row.tensor])
        half_scale = np.abs(w).reshape(w.shape[0], -1).max(1) / 127 / 2
        assert 0 < row.max_abs_error <= half_scale.max() * (1 + 1e-5)
        assert row.int8_bytes == w.size + 4 * w.shape[0] and row.fp32_bytes == w.nbytes


def test_weight_only_matches_hand_dequantized_reference(graph, weight_only, data):
    qgraph, _ = weight_only
    reference = graph.copy()
    for name in WEIGHTS:
        q = const_array(qgraph.initializers[f"{name}_quantized"]).astype(np.float32)
        s = const_array(qgraph.initializers[f"{name}_scale"])
        hand = q * s.reshape(-1, *[1] * (q.ndim - 1))
        reference.initializers[name].const_value = wb_tensor(hand, name)
    images = data[0][:64]
    got = predict(_build(qgraph), images, 32)
    want = predict(_build(reference), images, 32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def wb_tensor(array, name):
    import onnx_ir as ir
    return ir.tensor(array.astype(np.float32), name=name)


def test_weight_only_accuracy_and_plan_size(weight_only, fp32, data, tmp_path):
    qgraph, _ = weight_only                    # no wb.optimize: constant folding would re-materialize W'
    engine0, acc0 = fp32
    engine = _build(qgraph)
    acc = accuracy(predict(engine, data[0], 32), data[1])
    print(f"fp32 accuracy {acc0:.4f}, weight-only int8 {acc:.4f}")
    assert abs(acc - acc0) <= 0.01
    # the engine keeps the int8 weights (the DequantizeLinear output is not folded into a float weight)
    assert {w.dtype for n, w in engine.weights.items() if n.endswith("_quantized")} == {np.dtype(np.int8)}
    assert engine.weight_bytes <= 0.3 * engine0.weight_bytes
    engine.save(tmp_path / "q.wbplan")
    engine0.save(tmp_path / "f.wbplan")
    size, size0 = len(engine.to_bytes()), len(engine0.to_bytes())
    assert (tmp_path / "q.wbplan").stat().st_size == size
    print(f"plan bytes {size} / {size0} = {size / size0:.3f}, weight bytes ratio "
          f"{engine.weight_bytes / engine0.weight_bytes:.3f}")
    # weights alone are 0.256x; the plan's fixed part (npy/zip headers, float biases, the deflated
    # manifest) is a visible share of this 0.2 MB model: the whole plan lands at ~0.28x
    assert size <= 0.3 * size0
    reloaded = wb.Engine.load(tmp_path / "q.wbplan")
    np.testing.assert_array_equal(predict(reloaded, data[0][:32], 32), predict(engine, data[0][:32], 32))


# -- 2:4 pruning ---------------------------------------------------------------------------------

def test_prune_2to4_digits(graph, pruned, fp32, data):
    sgraph, report = pruned
    onnx.checker.check_model(sgraph.to_proto(), full_check=True)
    assert list(report.columns) == ["tensor", "node", "pruned", "reason", "density"]
    rows = report.set_index("tensor")
    assert not rows.loc["conv1.weight", "pruned"]
    assert "reduction length 9" in rows.loc["conv1.weight", "reason"]
    assert "not a multiple of 4" in rows.loc["conv1.weight", "reason"]
    assert rows.loc["conv1.weight", "density"] == 1.0
    done = report[report["pruned"]]
    assert done["tensor"].tolist() == WEIGHTS[1:] and (done["reason"] == "").all()
    assert np.allclose(done["density"], 0.5, atol=0.01)
    flags = is_2to4(sgraph)
    assert all(flags[t] for t in done["tensor"]) and not flags["conv1.weight"]
    assert not any(is_2to4(graph).values())
    np.testing.assert_array_equal(const_array(sgraph.initializers["conv1.weight"]),
                                  const_array(graph.initializers["conv1.weight"]))
    acc0 = fp32[1]
    acc = accuracy(predict(_build(sgraph), data[0], 32), data[1])
    print(f"2:4 pruning (no fine-tuning): accuracy {acc0:.4f} -> {acc:.4f} ({100 * (acc - acc0):+.2f} points)")
    assert 0.1 < acc <= 1.0


def test_prune_then_quantize_keeps_pattern(pruned):
    sgraph, report = pruned
    qgraph, _ = quantize_weights_int8(sgraph)
    flags = is_2to4(qgraph)                                # checked on the stored int8 tensors
    assert flags == {f"{t}_quantized": t != "conv1.weight" for t in WEIGHTS}


def test_prune_min_size(graph):
    _, report = prune_2to4(graph, min_size=5_000)
    rows = report.set_index("tensor")
    assert rows.loc["fc1.weight", "pruned"] and rows.loc["conv3.weight", "pruned"]
    assert not rows.loc["conv2.weight", "pruned"] and "size 4608 < min_size 5000" in rows.loc["conv2.weight", "reason"]
    assert not rows.loc["fc2.weight", "pruned"]


def _matmul_gemm_graph():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(8, 12)).astype(np.float32)       # MatMul B [K=8, N=12]
    c = rng.normal(size=(12, 6)).astype(np.float32)       # Gemm transB=0 [K=12, N=6]
    d = rng.normal(size=(4, 6)).astype(np.float32)        # Gemm transB=1 [N=4, K=6]: skipped
    nodes = [helper.make_node("MatMul", ["x", "b"], ["h"], name="mm"),
             helper.make_node("Gemm", ["h", "c"], ["y"], name="g0"),
             helper.make_node("Gemm", ["y", "d"], ["z"], name="g1", transB=1)]
    g = helper.make_graph(nodes, "mmg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
                          [numpy_helper.from_array(b, "b"), numpy_helper.from_array(c, "c"),
                           numpy_helper.from_array(d, "d")])
    return wb.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])), b, c, d


def test_matmul_and_gemm_axes():
    graph, b, c, d = _matmul_gemm_graph()
    sgraph, report = prune_2to4(graph)
    rows = report.set_index("tensor")
    assert rows["pruned"].to_dict() == {"b": True, "c": True, "d": False}
    assert "reduction length 6" in rows.loc["d", "reason"]
    got_b, got_c = const_array(sgraph.initializers["b"]), const_array(sgraph.initializers["c"])
    np.testing.assert_array_equal(got_b, sparsity.prune_2to4(b, axis=0)[0])
    np.testing.assert_array_equal(got_c, sparsity.prune_2to4(c, axis=0)[0])
    assert is_2to4(sgraph) == {"b": True, "c": True, "d": False}

    qgraph, qreport = quantize_weights_int8(graph)
    onnx.checker.check_model(qgraph.to_proto(), full_check=True)
    axes = {n.outputs[0].name: n.attributes["axis"].value for n in qgraph.nodes if n.op_type == "DequantizeLinear"}
    assert axes == {"b_dequantized": 1, "c_dequantized": 1, "d_dequantized": 0}
    x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    got = _build_any(qgraph).create_context().run({"x": x})["z"]
    want = ((x @ b) @ c) @ d.T
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * np.abs(want).max())


def _build_any(graph):
    return wb.build(graph, wb.BuilderConfig(profile=(1, 3, 4)))
