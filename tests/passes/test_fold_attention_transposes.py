"""fold_attention_transposes: the head-split transposes of Q, K, V and the head-merge transpose of
the context fold into FusedAttention(qkv_layout="bshd"), numbers unchanged; partial patterns stay."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pass_checks import assert_sound_rewrite

import workbench as wb
from workbench.evaluate import zoo

B, S, H, D = 2, 6, 3, 4
PASSES = ["fuse_attention", "fold_attention_transposes"]


def heads_model(k_perm=(0, 2, 3, 1), out_perm=(0, 2, 1, 3), extra_reader=False) -> onnx.ModelProto:
    """BERT's self-attention from [B, S, H, D] projections: transposes in, attention, transpose out."""
    mask = numpy_helper.from_array(np.where(np.arange(S) < S - 2, 0.0, -1e4).astype(np.float32)
                                   .reshape(1, 1, 1, S), "mask")
    scale = numpy_helper.from_array(np.array(np.sqrt(D), np.float32), "c")
    transposed_k = list(k_perm) == [0, 2, 3, 1]
    nodes = [helper.make_node("Transpose", ["q"], ["qt"], name="q_t", perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["k"], ["kt"], name="k_t", perm=list(k_perm)),
             helper.make_node("Transpose", ["v"], ["vt"], name="v_t", perm=[0, 2, 1, 3])]
    if not transposed_k:
        nodes.append(helper.make_node("Transpose", ["kt"], ["ktt"], name="k_tt", perm=[0, 1, 3, 2]))
    nodes += [helper.make_node("MatMul", ["qt", "kt" if transposed_k else "ktt"], ["s"], name="scores"),
              helper.make_node("Div", ["s", "c"], ["s1"], name="scale"),
              helper.make_node("Add", ["s1", "mask"], ["s2"], name="mask_add"),
              helper.make_node("Softmax", ["s2"], ["p"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["p", "vt"], ["ctx"], name="context"),
              helper.make_node("Transpose", ["ctx"], ["y"], name="ctx_t", perm=list(out_perm))]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("qt", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [B, S, H, D]) for n in "qkv"]
    graph = helper.make_graph(nodes, "heads", inputs, outputs, [mask, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _feeds():
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal((B, S, H, D)).astype(np.float32) for n in "qkv"}


@pytest.mark.parametrize("k_perm", [(0, 2, 3, 1), (0, 2, 1, 3)], ids=["k-transposed", "k-heads-first"])
def test_transposes_fold(k_perm):
    graph = wb.load(heads_model(k_perm=k_perm))
    optimized, report = wb.optimize(graph, only=PASSES)
    assert optimized.op_counts() == {"workbench::FusedAttention": 1}
    node = next(iter(optimized.model.graph))
    assert node.attributes["qkv_layout"].value == "bshd" and node.attributes["k_transposed"].value == 0
    assert [v.name for v in node.inputs] == ["q", "k", "v", "mask"]
    folded = report.to_dataframe().query("`pass` == 'fold_attention_transposes'")
    assert {"q_t", "k_t", "v_t", "ctx_t", "softmax"} <= set(folded["replaced_nodes"].iloc[0])
    assert_sound_rewrite(graph, optimized, PASSES, _feeds(), tol=1e-6)
    for precision in ("fp16", "bf16"):     # the half kernels keep float32 scores in both layouts
        assert_sound_rewrite(graph, optimized, PASSES, _feeds(), config=wb.BuilderConfig(precision=precision),
                             tol=2e-2)


@pytest.mark.parametrize("kwargs,reason", [
    ({"out_perm": (0, 1, 2, 3)}, None),               # the context is not merged back: nothing to fold
    ({"extra_reader": True}, "is a graph output"),    # the transposed Q is read elsewhere
])
def test_partial_patterns_stay(kwargs, reason):
    graph = wb.load(heads_model(**kwargs))
    optimized, report = wb.optimize(graph, only=PASSES)
    assert optimized.op_counts().get("Transpose", 0) >= 1
    assert all(a.value != "bshd" for n in optimized.model.graph for k, a in n.attributes.items() if k == "qkv_layout")
    misses = [m.reason for m in report.misses if m.pass_name == "fold_attention_transposes"]
    assert (reason is None and not misses) or any(reason in m for m in misses)
    assert_sound_rewrite(graph, optimized, PASSES, _feeds())


def test_bert_loses_its_head_transposes():
    graph = wb.load(zoo.bert())
    optimized, _ = wb.optimize(graph)
    counts = optimized.op_counts()
    assert counts.get("Transpose", 0) == 0
    layers = sum(1 for n in graph.nodes if n.op_type == "Softmax")
    folded = [n for n in optimized.model.graph if n.op_type == "FusedAttention"]
    assert len(folded) == layers and all(n.attributes["qkv_layout"].value == "bshd" for n in folded)
