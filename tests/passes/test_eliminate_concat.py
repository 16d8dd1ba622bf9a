"""eliminate_concat: Concat -> ConcatView with producers writing into their slices."""
from __future__ import annotations

import numpy as np
from onnx import helper
from pass_checks import assert_sound_rewrite, float_io_model

import workbench as wb
from workbench.evaluate import zoo
from workbench.evaluate.zoo.light import light_model
from workbench.passes.eliminate_concat import COPY_INPUTS, SLICE, WRITE_INTO

PASS = "eliminate_concat"
RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _check(graph, optimized, feeds, batch, passes):
    return assert_sound_rewrite(graph, optimized, passes, feeds, config=wb.BuilderConfig(batch_size=batch), tol=1e-5)


def _meta(graph):
    return {n.name: dict(n.metadata_props) for n in graph.nodes if n.metadata_props}


def _three_branches(extra_nodes=(), concat_inputs=("a", "b", "x"), outputs=(("y", ["N", 9, 4]),), axis=1):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Sigmoid", ["x"], ["b0"], name="sigmoid"),
             helper.make_node("Mul", ["b0", "k"], ["b"], name="scale"),
             *extra_nodes,
             helper.make_node("Concat", list(concat_inputs), ["y"], name="concat", axis=axis)]
    return float_io_model(nodes, [("x", ["N", 3, 4])], list(outputs), [("k", np.float32([2.0]))], ir_version=10)


def test_producers_write_into_slices_and_other_inputs_are_copied():
    graph = wb.load(_three_branches())
    optimized, report = wb.optimize(graph, only=[PASS])
    assert optimized.op_counts() == {"Relu": 1, "Sigmoid": 1, "Mul": 1, "workbench::ConcatView": 1}
    view, = [n for n in optimized.nodes if n.op_type == "ConcatView"]
    assert view.name == "concat" and view.attributes["axis"].value == 1
    assert _meta(optimized) == {"relu": {WRITE_INTO: "y", SLICE: "1:0:3"}, "scale": {WRITE_INTO: "y", SLICE: "1:3:3"},
                                "concat": {COPY_INPUTS: "x"}}
    row = report.to_dataframe().iloc[0]
    assert row["replaced_nodes"] == ["concat"] and row["new_op"] == "workbench::ConcatView"
    assert row["detail"] == "written in place into 'y': a -> 1:0:3, b -> 1:3:3; copied: x (is a graph input)"
    assert report.misses_dataframe()["reason"].tolist() == ["input 'x' is copied into the concat: it is a graph input"]
    proto = _check(graph, optimized, {"x": _x(2, 3, 4)}, 2, [PASS])
    assert {p.key: p.value for p in proto.graph.node[0].metadata_props} == {WRITE_INTO: "y", SLICE: "1:0:3"}


def test_inputs_with_other_readers_are_copied():
    extra = [helper.make_node("Neg", ["a"], ["n"], name="neg")]
    model = _three_branches(extra, ("a", "b", "b"), (("y", ["N", 9, 4]), ("n", ["N", 3, 4])))
    optimized, report = wb.optimize(wb.load(model), only=[PASS])
    assert "workbench::ConcatView" not in optimized.op_counts() and _meta(optimized) == {}
    reason, = report.misses_dataframe()["reason"]
    assert "no input can be written in place" in reason
    assert "'a' is also read by ['neg']" in reason and "'b' is read more than once" in reason


def test_graph_output_and_negative_axis():
    model = _three_branches(concat_inputs=("a", "b"), outputs=(("y", ["N", 3, 8]), ("a", ["N", 3, 4])), axis=-1)
    graph = wb.load(model)
    optimized, report = wb.optimize(graph, only=[PASS])
    assert _meta(optimized) == {"scale": {WRITE_INTO: "y", SLICE: "2:4:4"}, "concat": {COPY_INPUTS: "a"}}
    assert "is a graph output" in report.to_dataframe()["detail"].iloc[0]
    _check(graph, optimized, {"x": _x(2, 3, 4)}, 2, [PASS])


def test_dynamic_extent_keeps_the_concat():
    model = _three_branches(concat_inputs=("a", "b"), outputs=(("y", ["M", 3, 4]),), axis=0)
    optimized, report = wb.optimize(wb.load(model), only=[PASS])
    assert optimized.op_counts()["Concat"] == 1 and report.to_dataframe().empty
    assert "extents along axis 0 are not static" in report.misses_dataframe()["reason"].iloc[0]


def test_inception_block_split_view_is_written_by_the_merged_conv():
    graph = wb.load(zoo.inception_block(seed=0))
    passes = ["fuse_conv_act", "merge_parallel_convs", PASS]
    optimized, report = wb.optimize(graph, only=passes)
    assert optimized.op_counts() == {"workbench::FusedConv": 4, "workbench::SplitView": 1, "MaxPool": 1,
                                     "workbench::ConcatView": 1}
    meta = _meta(optimized)
    assert COPY_INPUTS not in meta.get("inception_3a/output", {})   # nothing is copied
    split = meta["inception_3a/1x1+3x3_reduce+5x5_reduce/split"]   # the 1x1 branch: channels 0..63 of the wide conv
    assert split == {WRITE_INTO + ".0": "output", SLICE + ".0": "1:0:64"}        # the concat output value
    assert [meta[f"inception_3a/{b}"][SLICE] for b in ("3x3+relu_3x3", "5x5+relu_5x5", "pool_proj+relu_pool_proj")] \
        == ["1:64:128", "1:192:32", "1:224:32"]
    assert "copied" not in report.to_dataframe().set_index("pass").loc[PASS, "detail"]
    _check(graph, optimized, {"input": _x(2, 192, 28, 28)}, 2, passes)


def test_light_inception_v1_full_optimize():
    """Acceptance: one merged 1x1 conv per inception block, no copying Concat left, same outputs."""
    graph = wb.load(light_model("inception_v1"))
    optimized, report = wb.optimize(graph)
    counts = optimized.op_counts()
    assert "Concat" not in counts and counts["workbench::ConcatView"] == 9
    assert counts["workbench::SplitView"] == 9 and counts["workbench::FusedConv"] == 57 - 2 * 9
    rows = report.to_dataframe()
    assert (rows["pass"] == "merge_parallel_convs").sum() == 9 and (rows["pass"] == PASS).sum() == 9
    assert not any(COPY_INPUTS in n.metadata_props for n in optimized.nodes)      # every concat input placed
    assert sum(WRITE_INTO in n.metadata_props for n in optimized.nodes) == 27       # 3 producers per block
    assert sum(WRITE_INTO + ".0" in n.metadata_props for n in optimized.nodes) == 9  # + the 1x1 view
    _check(graph, optimized, {"data_0": _x(1, 3, 224, 224)}, 1,
           ["fuse_conv_act", "fuse_gemm_epilogue", "merge_parallel_convs", PASS])
