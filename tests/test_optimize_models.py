"""The optimizer on whole models: outputs unchanged (CPU engine, relative L2 <= 1e-5), a second
optimize changes nothing, the result is valid ONNX, and the API refuses bad arguments by name."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import rel_l2

import workbench as wb
from workbench.errors import UnknownPassError
from workbench.evaluate import zoo
from workbench.evaluate.zoo.light import LIGHT_MODELS, light_model


def _feeds(graph: wb.Graph, batch: int) -> dict:
    rng = np.random.default_rng(7)
    feeds = {}
    for spec in graph.inputs:
        shape = [batch if not isinstance(d, int) else d for d in spec.shape]
        if spec.dtype.kind == "i":
            feeds[spec.name] = rng.integers(0, 2 if "mask" in spec.name else 1000, shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def _check_model(model: onnx.ModelProto, batch: int = 1):
    graph = wb.load(model)
    optimized, report = wb.optimize(graph)
    onnx.checker.check_model(optimized.to_proto(), full_check=True)
    assert report.nodes_after < report.nodes_before
    again, second = wb.optimize(optimized)
    assert second.to_dataframe().empty, second.to_dataframe()
    feeds = _feeds(graph, batch)
    symbolic = any(not isinstance(d, int) for s in graph.inputs for d in s.shape)
    # the oracle's kernels on both sides: only the graph differs
    config = wb.BuilderConfig(batch_size=batch if symbolic else None, tactic_sources=["numpy"])
    want = wb.build(graph, config).create_context().run(feeds)
    got = wb.build(optimized, config).create_context().run(feeds)
    for name in want:
        assert rel_l2(got[name], want[name]) <= 1e-5, name
    return optimized, report


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_outputs_unchanged(name):
    _check_model(light_model(name))


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["resnet50", "mobilenet_v2", "googlenet"])
def test_zoo_cnn_outputs_unchanged(builder):
    _check_model(getattr(zoo, builder)(seed=0), batch=1)


def test_bert_outputs_unchanged():
    _check_model(zoo.bert(seed=0), batch=2)


def test_inception_v1_acceptance():
    optimized, report = _check_model(light_model("inception_v1"))
    counts = optimized.op_counts()
    assert "Concat" not in counts
    assert counts.get("workbench::SplitView", 0) == 9              # one merged 1x1 conv per block
    original = wb.load(light_model("inception_v1"))
    relu_only = [n.name for n in original.nodes if n.op_type == "Conv"
                 and [u.node.op_type for u in n.outputs[0].uses()] == ["Relu"]]
    fused = {s for n in optimized.nodes if n.domain == "workbench" for s in wb.ir.source_nodes_of(n)}
    assert set(relu_only) <= fused
    assert report.nodes_before == sum(original.op_counts().values())


def test_levels_and_disable():
    graph = wb.load(zoo.inception_block(seed=0))
    untouched, report0 = wb.optimize(graph, level=0)
    assert report0.to_dataframe().empty and untouched.op_counts() == graph.op_counts()
    without_merge, report = wb.optimize(graph, disable=["merge_parallel_convs"])
    assert "merge_parallel_convs" not in set(report.to_dataframe()["pass"])
    assert graph.op_counts() == wb.load(zoo.inception_block(seed=0)).op_counts()   # input left untouched


def test_unknown_pass_name_lists_valid_names():
    graph = wb.load(zoo.inception_block(seed=0))
    with pytest.raises(UnknownPassError, match=r"unknown pass name\(s\) \['fuse_everything'\]; valid names: .*fuse_conv_act"):
        wb.optimize(graph, disable=["fuse_everything"])
    with pytest.raises(UnknownPassError, match="level must be 0, 1 or 2"):
        wb.optimize(graph, level=3)
