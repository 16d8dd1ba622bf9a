"""Evaluate at build time what does not depend on the inputs.

    Constant()                          ->  initializer
    op(c1, c2, ...), every ci constant  ->  initializer op(c1, c2, ...)   (the CPU kernel computes it)
    Shape(x), x of a fully static shape ->  initializer [d0, d1, ...]     (Size likewise)

Sweeping the graph in topological order folds whole chains, e.g. BERT's
Shape -> Gather -> Concat -> Reshape target once the batch size is fixed; the pass repeats until
a sweep folds nothing. Left alone, with the reason in the report: workbench-domain nodes (the
builder's business), random ops, Q/DQ nodes (explicit quantization reads them), ops without a
CPU kernel, and results over `MAX_ELEMENTS` elements (folding would bloat the weights).
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

import workbench.backends.cpu  # noqa: F401  (registers the CPU kernels)
from workbench.backends.cpu.registry import NodeInfo, lookup
from workbench.ir import WORKBENCH_DOMAIN, node_attributes
from workbench.passes.base import GraphPass
from workbench.passes.edit import STANDARD_DOMAINS, add_initializer, const_array, static_shape

__all__ = ["FoldConstantsPass", "MAX_ELEMENTS"]
log = logging.getLogger(__name__)

MAX_ELEMENTS = 1 << 20
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
_KEEP = {"QuantizeLinear": "kept for explicit quantization (Q/DQ)",
         "DequantizeLinear": "kept for explicit quantization (Q/DQ)"}


class FoldConstantsPass(GraphPass):
    name = "fold_constants"
    level = 1

    def apply(self, graph: ir.Graph) -> int:
        count, refused = 0, set()
        while True:
            folded = 0
            for node in list(graph):
                if node.graph is not graph or id(node) in refused:
                    continue
                arrays = self._evaluate(node, graph)
                if isinstance(arrays, str):
                    self.why_not(node, arrays)
                    refused.add(id(node))
                elif arrays is not None:
                    detail = self._replace(graph, node, arrays)
                    self.record([], [node], detail)
                    folded += 1
            count += folded
            if not folded:
                return count

    def _evaluate(self, node: ir.Node, graph: ir.Graph) -> list[np.ndarray | None] | str | None:
        """The node's output arrays; None when it is not a candidate; a string: why it is not folded."""
        static = node.op_type in ("Shape", "Size") and static_shape(node.inputs[0]) is not None
        inputs = [None if v is None else const_array(v) for v in node.inputs]
        constant = all(a is not None for v, a in zip(node.inputs, inputs) if v is not None)
        if not (static or (constant and (any(v is not None for v in node.inputs) or node.op_type == "Constant"))):
            return None
        if node.domain == WORKBENCH_DOMAIN:
            return "workbench-domain node (fused ops are left to the builder)"
        if node.op_type in _RANDOM or (node.op_type == "Dropout" and _training(inputs)):
            return f"{node.op_type} is random"
        if node.domain in STANDARD_DOMAINS and node.op_type in _KEEP:
            return _KEEP[node.op_type]
        fn = lookup(node.domain, node.op_type)
        if fn is None:
            return f"no CPU kernel for {node.domain or 'ai.onnx'}::{node.op_type}"
        big = node.op_type != "Constant"     # a Constant becomes an initializer of the same size
        for value in node.outputs:
            dims = static_shape(value)
            if big and dims is not None and int(np.prod(dims)) > MAX_ELEMENTS:
                return f"output {value.name!r} has {int(np.prod(dims))} elements (> {MAX_ELEMENTS})"
        if static:
            inputs[0] = np.broadcast_to(np.zeros((), np.float32), static_shape(node.inputs[0]))
        opset = graph.opset_imports.get(node.domain or "", graph.opset_imports.get("ai.onnx", 1))
        try:
            result = fn(inputs, node_attributes(node), NodeInfo(opset, len(node.outputs), node.name or ""))
        except Exception as exc:          # an op the kernel cannot evaluate here: keep the node
            return f"CPU kernel failed: {type(exc).__name__}: {exc}"
        arrays = list(result) if isinstance(result, (list, tuple)) else [result]
        arrays = [np.asarray(a) for a in arrays[:len(node.outputs)]]
        if len(arrays) < len(node.outputs):
            return f"the CPU kernel returned {len(arrays)} outputs, the node has {len(node.outputs)}"
        for value, array in zip(node.outputs, arrays):
            if big and array.size > MAX_ELEMENTS:
                return f"output {value.name!r} has {array.size} elements (> {MAX_ELEMENTS})"
            if array.dtype == object:
                return f"output {value.name!r} is not a numeric tensor"
        return arrays

    def _replace(self, graph: ir.Graph, node: ir.Node, arrays: list[np.ndarray]) -> str:
        """Swap the node for initializers holding `arrays`, one per output, named like the outputs."""
        pairs = []
        for value, array in zip(node.outputs, arrays):
            if not value.uses() and not value.is_graph_output():
                continue
            if value.dtype is not None:
                array = array.astype(value.dtype.numpy(), copy=False)
            stand_in = ir.Value(name=value.name)
            value.replace_all_uses_with(stand_in, replace_graph_outputs=True)
            pairs.append((stand_in, value.name, array))
        graph.remove(node, safe=True)
        for stand_in, name, array in pairs:
            add_initializer(graph, name, array, self.model.ir_version, value=stand_in)
        return ", ".join(f"{name}: {array.dtype.name}{list(array.shape)}" for _, name, array in pairs)


def _training(inputs: list[np.ndarray | None]) -> bool:
    return len(inputs) > 2 and inputs[2] is not None and bool(np.asarray(inputs[2]).reshape(-1)[0])
