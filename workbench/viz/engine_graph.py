"""`engine_graph`: an engine's layers as a `Graph`, so `render_svg` can draw what actually runs.

Why: an Engine (or a .wbplan loaded from disk) keeps no ONNX graph, only layers bound to tactics.
Its layers are the optimized graph's nodes, so rebuilding the graph from them (tensor names give the
edges, `source_nodes` the fused originals) lets reports and displays draw the engine without the
model file. The graph is for drawing only: weights are left out and it is never shape-inferred.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from workbench.ir import SOURCE_NODES_KEY, WORKBENCH_DOMAIN, Graph

__all__ = ["engine_graph"]


def engine_graph(engine) -> Graph:
    """One node per engine layer; graph inputs and outputs are the engine's. Fused layers carry their
    originals (attribute `source_nodes`, as the optimizer writes it), so the SVG lists them."""
    nodes, infos = [], []
    for layer in engine.layers:
        node = helper.make_node(layer.op, [n for n in layer.inputs if n not in engine.weights], layer.outputs,
                                name=layer.name, domain=layer.domain or None)
        if layer.domain == WORKBENCH_DOMAIN:
            node.attribute.append(helper.make_attribute("source_nodes", list(layer.source_nodes)))
        elif list(layer.source_nodes) != [layer.name]:
            node.metadata_props.add(key=SOURCE_NODES_KEY, value=",".join(layer.source_nodes))
        nodes.append(node)
        dtypes = list(getattr(layer, "output_dtypes", []) or [])
        for k, (name, shape) in enumerate(zip(layer.outputs, layer.output_shapes)):
            if name and shape is not None:
                dtype = dtypes[k] if k < len(dtypes) and dtypes[k] else "float32"
                infos.append(helper.make_tensor_value_info(name, _elem_type(dtype), list(shape)))
    inputs = [helper.make_tensor_value_info(s.name, _elem_type(s.dtype), _dims(s.shape)) for s in engine.inputs]
    outputs = [helper.make_tensor_value_info(s.name, _elem_type(s.dtype), _dims(s.shape)) for s in engine.outputs]
    name = str(engine.meta.get("model") or "engine")
    proto = helper.make_graph(nodes, f"{name} ({engine.precision}, {engine.network.backend})", inputs, outputs,
                              value_info=infos)
    domains = {layer.domain for layer in engine.layers if layer.domain not in ("", "ai.onnx")}
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid("", 17)] +
                              [helper.make_opsetid(d, 1) for d in sorted(domains)])
    return Graph(ir.from_proto(model), source=str(engine.meta.get("source", "<engine>")))


def _elem_type(dtype) -> int:
    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (TypeError, KeyError, ValueError):
        return onnx.TensorProto.UNDEFINED


def _dims(shape) -> list | None:
    return None if shape is None else ["?" if d is None else d for d in shape]
