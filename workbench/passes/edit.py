"""Graph-editing helpers shared by passes: look at the graph, build nodes, manage initializers.

Lookups answer a pattern's questions (`const_array`, `attr`, `only_consumer`, `producer_op`, ...);
builders make the replacement (`fused_node` names it after what it replaces and keeps the trace of
original node names); the initializer helpers add and drop constants, and keep models before IR
version 4 valid (there every initializer must also be listed as a graph input).

    >>> node = fused_node("FusedConv", [x, w, b], {"activation": "Relu"}, [conv, relu], graph)
    >>> node.name, sources_of(node)
    ('conv1/conv+relu', ['conv1/conv', 'conv1/relu'])
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.convenience import convert_attributes

from workbench.ir import SOURCE_NODES_KEY, source_nodes_of
from workbench.ir.fused import OPSET_VERSION, WORKBENCH_DOMAIN
from workbench.ir.names import free_name

__all__ = ["STANDARD_DOMAINS", "is_op", "producer_op", "reader_op", "only_consumer", "const_array",
           "split_constant", "attr", "static_shape", "resolve_reshape", "sources_of", "fused_node",
           "joined_name", "unique_node_name", "unique_value_name", "add_initializer",
           "drop_unread_initializers", "bypass"]

STANDARD_DOMAINS = ("", "ai.onnx")
sources_of = source_nodes_of   # the short name reads well inside passes


# -- looking at the graph ------------------------------------------------------------------------

def is_op(node: ir.Node | None, *ops: str) -> bool:
    """`node` is a standard-domain node of one of `ops`, e.g. `is_op(node, "Mul", "Div")`."""
    return node is not None and node.op_type in ops and node.domain in STANDARD_DOMAINS


def is_fused(node: ir.Node | None, *ops: str) -> bool:
    """`node` is a workbench-domain fused node of one of `ops`, e.g. `is_fused(node, "FusedAttention")`."""
    return node is not None and node.op_type in ops and node.domain == WORKBENCH_DOMAIN


def producer_op(value: ir.Value | None, *ops: str) -> ir.Node | None:
    """The standard-domain node of one of `ops` that computes `value`, else None."""
    node = value.producer() if value is not None else None
    return node if is_op(node, *ops) else None


def reader_op(value: ir.Value, op: str) -> ir.Node | None:
    """The one `op` node reading `value` (other readers are left for the partial-match check)."""
    readers = {id(u.node): u.node for u in value.uses() if is_op(u.node, op)}
    return next(iter(readers.values())) if len(readers) == 1 else None


def only_consumer(value: ir.Value) -> ir.Node | None:
    """The single node reading `value`, or None (several readers, none, or a graph output)."""
    users = {id(u.node): u.node for u in value.uses()}
    if len(users) != 1 or value.is_graph_output():
        return None
    return next(iter(users.values()))


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of a constant (initializer or Constant output), else None."""
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
        return producer.attributes["value"].value.numpy()
    return None


def split_constant(node: ir.Node | None) -> tuple[ir.Value, np.ndarray] | None:
    """(other input, constant) of a binary node with exactly one constant input, else None.

    The constant may come first except for Div (c / x is no scaling of x).
    """
    if node is None or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if const_array(b) is not None and const_array(a) is None:
        return a, const_array(b)
    if const_array(a) is not None and const_array(b) is None and node.op_type != "Div":
        return b, const_array(a)
    return None


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """The plain value of attribute `name`, or `default` when the node has none."""
    attribute = node.attributes.get(name)
    return default if attribute is None else attribute.value


def static_shape(value: ir.Value | None) -> list[int] | None:
    """The shape of `value` when every dim is a known int, else None."""
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return [int(d) for d in value.shape]


def resolve_reshape(shape: list[int], target: list[int], allowzero: bool = False) -> list[int] | None:
    """The output shape of Reshape(x of `shape`, `target`), or None if `target` is invalid.

    >>> resolve_reshape([2, 3, 4], [0, -1])
    [2, 12]
    """
    dims = [shape[i] if d == 0 and not allowzero and i < len(shape) else d for i, d in enumerate(target)]
    total = int(np.prod(shape))
    if dims.count(-1) == 1:
        known = int(np.prod([d for d in dims if d != -1]))
        if known == 0 or total % known:
            return None
        dims[dims.index(-1)] = total // known
    if any(d < 0 for d in dims) or int(np.prod(dims)) != total:
        return None
    return dims


# -- building nodes ------------------------------------------------------------------------------

def fused_node(op_type: str, inputs: Iterable[ir.Value | None], attributes: dict[str, Any],
               replaced: Sequence[ir.Node], graph: ir.Graph, *, num_outputs: int = 1,
               domain: str = WORKBENCH_DOMAIN, name: str | None = None) -> ir.Node:
    """A new node that replaces `replaced`, named after them (unique in `graph`).

    Args:
        op_type, inputs, attributes: the new node (attributes whose value is None are left out).
        replaced: the nodes it stands for; their original names become its trace: the
            `source_nodes` attribute of a workbench-domain node, or, for a standard-domain node
            (`domain=""`, which takes no extra attributes), `metadata_props[SOURCE_NODES_KEY]`.
        graph: where the name must be unique (the node is not inserted).
        num_outputs, domain, name: as for `ir.Node`; `name` defaults to `joined_name` of `replaced`.
    """
    attributes = {k: v for k, v in attributes.items() if v is not None}
    sources = list(dict.fromkeys(s for n in replaced for s in sources_of(n)))
    metadata = {}
    if domain == WORKBENCH_DOMAIN:
        attributes["source_nodes"] = sources
        graph.opset_imports.setdefault(WORKBENCH_DOMAIN, OPSET_VERSION)
    else:
        metadata[SOURCE_NODES_KEY] = ",".join(sources)
    base = name or joined_name([n.name or n.op_type for n in replaced])
    return ir.Node(domain, op_type, list(inputs), convert_attributes(attributes), num_outputs=num_outputs,
                   name=unique_node_name(graph, base), metadata_props=metadata)


def joined_name(names: list[str]) -> str:
    """One name for several: the first, then the others without the prefix they share.

    >>> joined_name(["inception_3a/1x1", "inception_3a/relu_1x1"])
    'inception_3a/1x1+relu_1x1'
    """
    if len(names) == 1:
        return names[0]
    cut = max(names[0].rfind(sep, 0, len(os.path.commonprefix(names)) + 1) for sep in "/.") + 1
    tail = [n[cut:] for n in names[1:]]
    return "+".join([names[0]] + (tail if len(names) <= 4 else tail[:2] + [f"{len(names) - 3} more"]))


def unique_node_name(graph: ir.Graph, base: str) -> str:
    """`base`, or `base_2`, `base_3`, ...: the first that no node of `graph` is called."""
    return free_name(base, {n.name for n in graph})


def unique_value_name(graph: ir.Graph, base: str) -> str:
    """`base`, or `base_2`, ...: the first that no graph input or node output of `graph` is called."""
    return free_name(base, {v.name for node in graph for v in node.outputs} | {v.name for v in graph.inputs})


# -- initializers and rewiring -------------------------------------------------------------------

def add_initializer(graph: ir.Graph, name: str, array: np.ndarray, ir_version: int,
                    value: ir.Value | None = None) -> ir.Value:
    """Register `array` as an initializer named `name` (made unique); returns its value.

    Args:
        graph: the graph that gets the initializer.
        name: the wanted name; `name_2`, ... when taken by an initializer or graph input.
        array: the constant.
        ir_version: the model's; before IR version 4 every initializer must also be a graph
            input, so it is listed as one.
        value: an existing value to turn into the initializer (its readers keep reading it).

    >>> add_initializer(graph, "conv1.fused_bias", np.zeros(64, np.float32), model.ir_version)
    """
    value = value or ir.Value()
    value.name = free_name(name, set(graph.initializers) | {v.name for v in graph.inputs})
    value.const_value = ir.tensor(array, name=value.name)
    value.shape, value.dtype = ir.Shape(array.shape), ir.DataType.from_numpy(array.dtype)
    graph.register_initializer(value)
    if ir_version < 4:
        graph.inputs.append(value)
    return value


def drop_unread_initializers(graph: ir.Graph, values: Iterable[ir.Value | None], ir_version: int) -> list[str]:
    """Drop those of `values` that are initializers nobody reads; returns their names.

    An initializer that is also a graph input stays from IR version 4 on (an overridable input
    is part of the model's interface); before that every initializer is one, and the input goes too.
    """
    dropped = []
    for value in values:
        if value is None or not value.is_initializer() or value.uses() or value.is_graph_output():
            continue
        if graph.initializers.get(value.name) is not value:
            continue
        if value.is_graph_input():
            if ir_version >= 4:
                continue
            graph.inputs.remove(value)
        graph.initializers.pop(value.name)
        dropped.append(value.name)
    return dropped


def bypass(graph: ir.Graph, node: ir.Node, source: ir.Value | None = None) -> str | None:
    """Remove `node`, its first output read from `source` (default: its first input) instead.

    A graph output keeps its name (`source` takes it). Returns None on success, else why not
    (the graph is then unchanged).
    """
    x, out = source or node.inputs[0], node.outputs[0]
    if out.is_graph_output():
        if x.is_graph_input() or x.is_graph_output() or x.is_initializer():
            return f"{out.name!r} is a graph output and {x.name!r} is a graph input, output or initializer"
        name = out.name
        out.replace_all_uses_with(x, replace_graph_outputs=True)
        graph.remove(node, safe=True)
        x.name = name
        return None
    out.replace_all_uses_with(x)
    graph.remove(node, safe=True)
    return None
