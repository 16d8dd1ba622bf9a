"""`Graph`: an ONNX model held as onnx_ir, the object every stage of the road passes along.

Why a wrapper and not a bare `onnx_ir.Model`: the workbench needs a few model-level facts
(user-facing inputs without initializers, op counts, opset per domain) and a place for rich
displays, without adding attributes to onnx_ir's classes.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from workbench.ir.dtypes import np_dtype

__all__ = ["Graph", "TensorSpec", "node_attributes", "source_nodes_of", "WORKBENCH_DOMAIN", "SOURCE_NODES_KEY"]

WORKBENCH_DOMAIN = "workbench"   # fused ops live here, so optimized graphs stay valid ONNX
SOURCE_NODES_KEY = "workbench.source_nodes"   # metadata key on standard-domain nodes a pass rewrote

Dim = int | str | None           # int: fixed; str: symbolic name; None: unknown


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, element dtype and shape of a graph input or output."""
    name: str
    dtype: np.dtype | None
    shape: tuple[Dim, ...] | None

    @classmethod
    def of(cls, value: ir.Value) -> "TensorSpec":
        dtype = np_dtype(value.dtype) if value.dtype is not None else None
        shape = None
        if value.shape is not None:
            shape = tuple(d if isinstance(d, int) else (d.value if d.value else None) for d in value.shape)
        return cls(value.name, dtype, shape)

    def __str__(self) -> str:
        dims = "?" if self.shape is None else "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype.name if self.dtype is not None else '?'}[{dims}]"


class Graph:
    """A loaded (and possibly optimized) ONNX model with inferred shapes and dtypes.

    Example:
        >>> g = wb.load("model.onnx")
        >>> g.inputs
        [TensorSpec(name='input', dtype=dtype('float32'), shape=('N', 1, 8, 8))]
    """

    def __init__(self, model: ir.Model, source: str = "<memory>"):
        self.model = model
        self.source = source

    # -- model-level facts -------------------------------------------------------------
    @property
    def ir_graph(self) -> ir.Graph:
        return self.model.graph

    @property
    def name(self) -> str:
        return self.model.graph.name or "graph"

    @property
    def nodes(self) -> list[ir.Node]:
        return list(self.model.graph)

    @property
    def initializers(self) -> dict[str, ir.Value]:
        return dict(self.model.graph.initializers)

    @property
    def inputs(self) -> list[TensorSpec]:
        """Feeds the user supplies: graph inputs that are not initializers."""
        inits = self.model.graph.initializers
        return [TensorSpec.of(v) for v in self.model.graph.inputs if v.name not in inits]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.of(v) for v in self.model.graph.outputs]

    def opset(self, domain: str = "") -> int | None:
        imports = self.model.opset_imports
        return imports.get(domain, imports.get("ai.onnx") if domain == "" else None)

    def op_counts(self) -> dict[str, int]:
        return dict(collections.Counter(_qualified_op(n) for n in self.model.graph))

    # -- conversion ---------------------------------------------------------------------
    def to_proto(self) -> onnx.ModelProto:
        return ir.to_proto(self.model)

    def copy(self) -> "Graph":
        return Graph(ir.from_proto(self.to_proto()), self.source)

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"<Graph {self.name!r}: {len(self.model.graph)} nodes, inputs [{ins}] -> [{outs}]>"

    def __deepcopy__(self, memo: dict) -> "Graph":
        return self.copy()


def _qualified_op(node: ir.Node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def source_nodes_of(node: ir.Node) -> list[str]:
    """Names of the original ONNX nodes behind `node`: the `source_nodes` attribute of a fused
    workbench op, the comma-separated metadata entry of a standard op a pass rebuilt (a folded
    Conv+BatchNorm), or the node's own name."""
    attribute = node.attributes.get("source_nodes")
    if attribute is not None and node.domain == WORKBENCH_DOMAIN:
        return list(attribute.value)
    recorded = node.metadata_props.get(SOURCE_NODES_KEY)
    if recorded:
        return recorded.split(",")
    return [node.name or node.op_type]


def node_attributes(node: ir.Node) -> dict[str, Any]:
    """Attributes as plain Python values: int, float, str, lists of those, numpy arrays for tensors.

    Graph-valued attributes (If/Loop bodies) are returned as onnx_ir Graphs; backends that cannot
    run subgraphs simply do not declare those ops.
    """
    out: dict[str, Any] = {}
    for name, attr in node.attributes.items():
        value = attr.value
        kind = attr.type
        if kind == ir.AttributeType.TENSOR:
            value = value.numpy()
        elif kind == ir.AttributeType.TENSORS:
            value = [t.numpy() for t in value]
        elif kind == ir.AttributeType.STRING:
            value = value.decode() if isinstance(value, bytes) else value
        elif kind == ir.AttributeType.STRINGS:
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        elif kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS):
            value = list(value)
        out[name] = copy.copy(value)
    return out
