"""Shapes and dtypes of every tensor of a lowered network (what the autotuner feeds each layer and
the memory planner sizes), and the engine's memory plan."""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.memory import alias_root, plan_memory
from workbench.builder.streams import assign_streams, concurrent_last_use
from workbench.builder.network import IOSpec
from workbench.builder.precision import tensor_dtypes
from workbench.ir import Graph

__all__ = ["tensor_specs", "refresh_specs", "plan_engine_memory", "value_shapes"]


def value_shapes(graph: Graph) -> dict[str, tuple | None]:
    """Static shape of every value of an (inferred) graph, by name."""
    shapes = {}
    for spec in graph.inputs:
        shapes[spec.name] = None if spec.shape is None or not all(isinstance(d, int) for d in spec.shape) \
            else tuple(spec.shape)
    for node in graph.ir_graph:
        for value in node.outputs:
            if value is not None and value.shape is not None and all(isinstance(d, int) for d in value.shape):
                shapes[value.name] = tuple(value.shape)
    return shapes


def tensor_specs(graph: Graph, layers: list[Layer], weights: dict[str, np.ndarray],
                 inputs: list[IOSpec]) -> dict[str, tuple[tuple | None, str]]:
    """name -> (shape, dtype name) of every activation, at the profile's opt batch; sets each
    layer's `output_dtypes` on the way."""
    dtypes = tensor_dtypes(layers, weights, inputs)
    for layer in layers:            # ops without an ONNX schema (RoundTF32, plugins): like their first input
        first = next((dtypes.get(n) for n in layer.inputs if n and dtypes.get(n) is not None), None)
        for name in layer.outputs:
            if name and dtypes.get(name) is None and first is not None:
                dtypes[name] = first
    shapes = value_shapes(graph)
    for layer in layers:
        for name, shape in zip(layer.outputs, layer.output_shapes):
            if name and shape is not None:
                shapes[name] = tuple(shape)
    for layer in layers:
        layer.output_dtypes = [dtypes[n].name if n and dtypes.get(n) is not None else "" for n in layer.outputs]
    names = set(shapes) | {n for l in layers for n in l.outputs if n}
    return {n: (shapes.get(n), dtypes[n].name if dtypes.get(n) is not None else "") for n in names if n not in weights}


def refresh_specs(specs: dict, shapes: dict[str, tuple | None], layers: list[Layer]) -> None:
    """After layout assignment: the NHWC shapes, and dtypes for the tensors the pass made (a
    Reformat's output, an output renamed inside) taken from the tensor they come from."""
    for layer in layers:
        for i, name in enumerate(layer.outputs):
            if name:
                source = layer.inputs[0] if layer.op == "Reformat" or name not in specs else name
                dtype = specs.get(source, (None, ""))[1]
                specs[name] = (shapes.get(name), dtype)
                layer.output_dtypes[i:i + 1] = [dtype]


def plan_engine_memory(layers: list[Layer], weights: dict, specs: dict, inputs: list[IOSpec],
                       outputs: list[IOSpec], backend, max_shapes: dict[str, tuple] | None = None,
                       max_streams: int = 1) -> dict:
    """The arena plan at the largest batch the engine accepts; views alias their source. With
    `max_streams` > 1, independent branches get streams (builder/streams.py) and lifetimes stretch so
    that no two tensors a parallel schedule may hold at once share bytes; the plan reports the streams."""
    sizes = {}
    for name, (shape, dtype) in specs.items():
        shape = (max_shapes or {}).get(name, shape)
        if shape is not None and None not in shape and dtype and name not in weights:
            sizes[name] = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    aliases, views = {}, set()
    for index, layer in enumerate(layers):
        tactic = backend.tactic(layer.tactic, layer)
        if getattr(tactic, "is_view", False):
            views.add(index)
            if layer.inputs and layer.inputs[0] in sizes:
                aliases.update({o: layer.inputs[0] for o in layer.outputs if o})
    steps = [(l.inputs, l.outputs) for l in layers]
    streams, last_use = None, None
    if max_streams > 1:
        streams = assign_streams(steps, views, max_streams)
        last_use = concurrent_last_use(steps, views, streams, _readers(steps, views, aliases))
    plan = plan_memory(steps, sizes, [s.name for s in inputs], [s.name for s in outputs], aliases, last_use)
    report = {**plan.report(), "offsets": plan.offsets, "sizes": plan.sizes, "aliases": plan.aliases}
    return {**report, "streams": streams.report()} if streams is not None else report


def _readers(steps, views: set[int], aliases: dict[str, str]) -> dict[str, list[int]]:
    """Tensor (a view's source for a view) -> the running layers that read it."""
    readers: dict[str, list[int]] = {}
    for index, (reads, _) in enumerate(steps):
        if index not in views:
            for name in reads:
                if name:
                    readers.setdefault(alias_root(name, aliases), []).append(index)
    return readers
