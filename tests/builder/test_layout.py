"""The NHWC layout pass: executing the re-laid-out layers (every NHWC layer through the CPU oracle
on channels-last data) reproduces the NCHW engine, and Reformat layers appear only at boundaries."""
from __future__ import annotations

import copy

import numpy as np

import workbench as wb
from workbench.builder.layout import assign_layout
from workbench.builder.oracle import oracle_outputs
from workbench.evaluate import zoo


def _relayout(engine):
    layers = copy.deepcopy(engine.layers)
    shapes = {k: tuple(v["shape"]) if v["shape"] else None for k, v in engine.meta["tensors"].items()}
    return assign_layout(layers, engine.weights, [o.name for o in engine.outputs], shapes), shapes


def _execute(layers, weights, feeds):
    env = {**weights, **feeds}
    for layer in layers:
        env.update(zip(layer.outputs, oracle_outputs(layer, weights, [env[n] if n else None for n in layer.inputs])))
    return env


def test_resnet_runs_channels_last_with_reformats_only_at_the_boundaries():
    graph, _ = wb.optimize(wb.load(zoo.resnet18(image_size=64)))
    engine = wb.build(graph, wb.BuilderConfig(batch_size=2, tactic_sources=["numpy"]))
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    want = engine.create_context().run({"input": x})["logits"]
    layers, shapes = _relayout(engine)
    reformats = [l for l in layers if l.op == "Reformat"]
    assert [l.attrs["perm"] for l in reformats] == [[0, 2, 3, 1], [0, 3, 1, 2]]   # in once, out once
    assert all(l.layout == "NHWC" for l in layers if l.op in ("FusedConv", "MaxPool", "GlobalAveragePool"))
    first_conv = next(l for l in layers if l.op == "FusedConv")
    assert shapes[first_conv.outputs[0]] == (2, 32, 32, 64)                      # NHWC shape recorded
    got = _execute(layers, engine.weights, {"input": x})["logits"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


def test_engine_outputs_that_are_images_come_back_nchw():
    graph = wb.load(zoo.inception_block(size=8))
    engine = wb.build(graph, wb.BuilderConfig(batch_size=1, tactic_sources=["numpy"]))
    feeds = {s.name: np.random.default_rng(1).standard_normal((1,) + tuple(s.shape[1:])).astype(np.float32)
             for s in engine.inputs}
    want = engine.create_context().run(feeds)
    layers, _ = _relayout(engine)
    assert layers[-1].op == "Reformat" and layers[-1].outputs == [engine.outputs[0].name]
    got = _execute(layers, engine.weights, feeds)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-6)
