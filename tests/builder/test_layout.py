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


def _input_quantize_layers():
    from workbench.backends.base import Layer
    q = Layer(name="q", op="QuantizeLinear", inputs=["x", "s", "z"], outputs=["xq"], opset=19, precision="int8",
              source_nodes=["conv/input_q"], output_shapes=[(2, 3, 4, 4)])
    r = Layer(name="xq/to_nhwc", op="Reformat", domain="workbench", inputs=["xq"], outputs=["xq/to_nhwc"],
              attrs={"perm": [0, 2, 3, 1]}, opset=1, precision="int8", output_shapes=[(2, 4, 4, 3)],
              output_dtypes=["int8"])
    weights = {"s": np.array(0.02, np.float32), "z": np.array(0, np.int8)}
    specs = {"x": ((2, 3, 4, 4), "float32"), "xq": ((2, 3, 4, 4), "int8"), "xq/to_nhwc": ((2, 4, 4, 3), "int8")}
    return [q, r], weights, specs


def test_input_quantize_folds_into_its_reformat_with_the_same_numbers():
    from workbench.builder.layout import fold_quantize_into_reformat
    layers, weights, specs = _input_quantize_layers()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    x.reshape(-1)[:3] = [np.nan, 0.03, 1e9]                      # NaN -> 0, a tie (1.5 -> 2), saturation
    q, r = (copy.deepcopy(layer) for layer in layers)
    want = oracle_outputs(r, weights, oracle_outputs(q, weights, [x, weights["s"], weights["z"]]))[0]
    folded = fold_quantize_into_reformat(layers, weights, specs, ["y"], lambda layer: True)
    assert len(folded) == 1 and folded[0].op == "Reformat" and folded[0].inputs == ["x", "s", "z"]
    assert folded[0].outputs == ["xq/to_nhwc"] and folded[0].source_nodes == ["conv/input_q"] and "xq" not in specs
    got = oracle_outputs(folded[0], weights, [x, weights["s"], weights["z"]])[0]
    assert got.dtype == np.int8 and np.array_equal(got, want) and want.reshape(-1)[0] == 0


def test_input_quantize_stays_where_folding_would_lose_something():
    from workbench.backends.base import Layer
    from workbench.builder.layout import fold_quantize_into_reformat
    layers, weights, specs = _input_quantize_layers()
    assert len(fold_quantize_into_reformat(layers, weights, dict(specs), ["y"], lambda layer: False)) == 2  # no kernel
    assert len(fold_quantize_into_reformat(layers, weights, dict(specs), ["xq"], lambda layer: True)) == 2  # an output
    other = Layer(name="other", op="Relu", inputs=["xq"], outputs=["o"], opset=19)                     # 2 readers
    assert len(fold_quantize_into_reformat(layers + [other], weights, dict(specs), ["y"], lambda layer: True)) == 3
    per_channel = {**weights, "s": np.full(3, 0.02, np.float32)}
    assert len(fold_quantize_into_reformat(layers, per_channel, dict(specs), ["y"], lambda layer: True)) == 2
