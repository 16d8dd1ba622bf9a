"""BuilderConfig(sparsity=...): which layers are marked sparse-eligible, what "force" prunes and skips,
on the bundled digits model (conv1's reduction length is 1*3*3 = 9: not a multiple of 4)."""
from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.builder.build import build_network
from workbench.evaluate.datasets import digits_model_path, digits_test
from workbench.evaluate.metrics import accuracy, predict
from workbench.runtime import plan


@pytest.fixture(scope="module")
def digits():
    graph, _ = wb.optimize(wb.load(digits_model_path()))
    return graph


def groups_of_4_have_at_most_2_nonzeros(w: np.ndarray, axis: int) -> bool:
    m = np.moveaxis(w.reshape(w.shape[0], -1) if w.ndim > 2 else w, axis, -1)
    return bool((np.count_nonzero(m.reshape(*m.shape[:-1], -1, 4), axis=-1) <= 2).all())


def test_disable_marks_nothing(digits):
    meta = build_network(digits, wb.BuilderConfig(batch_size=4, builder_level=0)).meta
    assert "sparse_layers" not in meta and "sparsity" not in meta


def test_enable_marks_only_layers_whose_weights_already_are_2to4(digits):
    dense = build_network(digits, wb.BuilderConfig(batch_size=4, sparsity="enable", builder_level=0))
    assert dense.meta["sparse_layers"] == [] and dense.meta["sparsity"] == {"mode": "enable"}
    pruned, _ = wb.prune_2to4(digits)
    net = build_network(pruned, wb.BuilderConfig(batch_size=4, sparsity="enable", builder_level=0))
    assert net.meta["sparse_layers"] == ["conv2+relu2", "conv3+relu3", "fc1+relu4", "fc2"]
    assert net.meta["sparse_weights"] == ["conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight"]
    # the marks are plain data in the plan file, readable without the builder
    assert plan.read(plan.dumps(net)).meta["sparse_layers"] == net.meta["sparse_layers"]


def test_force_prunes_and_lists_the_layer_it_cannot_prune(digits):
    net = build_network(digits, wb.BuilderConfig(batch_size=4, sparsity="force", builder_level=0))
    report = net.meta["sparsity"]
    assert report["mode"] == "force"
    assert report["pruned"] == ["conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight"]
    (skipped,) = report["skipped"]
    assert skipped["tensor"] == "conv1.weight" and skipped["node"] == "conv1+relu1"
    assert "reduction length 9 is not a multiple of 4" in skipped["reason"]
    assert "conv1+relu1" not in net.meta["sparse_layers"]
    for name, axis in [("conv2.weight", -1), ("conv3.weight", -1), ("fc1.weight", -1), ("fc2.weight", -1)]:
        w = net.weights[name]
        assert groups_of_4_have_at_most_2_nonzeros(w, axis) and np.count_nonzero(w) <= w.size // 2
    assert np.count_nonzero(net.weights["conv1.weight"]) == net.weights["conv1.weight"].size


def test_force_in_wb_build_reports_the_accuracy_change(digits):
    images, labels = digits_test()

    def top1(engine):
        return 100 * accuracy(predict(engine, images, 40), labels)
    engine = wb.build(digits, wb.BuilderConfig(batch_size=40, sparsity="force", builder_level=0), eval_fn=top1)
    change = engine.meta["sparsity"]["accuracy"]
    assert change["pruned"] == pytest.approx(top1(engine))
    dense = wb.build(digits, wb.BuilderConfig(batch_size=40, builder_level=0))
    assert change["dense"] == pytest.approx(top1(dense))
    assert change["change"] == pytest.approx(change["pruned"] - change["dense"])
    assert change["change"] < 0                       # magnitude pruning without fine-tuning costs accuracy
    assert engine.meta["sparse_layers"] == ["conv2+relu2", "conv3+relu3", "fc1+relu4", "fc2"]
