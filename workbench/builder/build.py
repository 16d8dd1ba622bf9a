"""`build_network`: Graph + BuilderConfig -> Network.

Steps: fix the symbolic batch (and any given input shapes) and re-infer shapes; lower every
node to a Layer (Constant nodes become weights); refuse, in one error, every op the backend
cannot run; pick a tactic per layer; keep only the weights some layer reads.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import onnx_ir as ir

from workbench.backends import get_backend
from workbench.backends.base import Layer
from workbench.builder.config import BuilderConfig, Profile
from workbench.builder.network import IOSpec, Network
from workbench.builder.precision import assign_precision, unique_name
from workbench.quant.insert_qdq import has_qdq
from workbench.errors import BuildError, ShapeInferenceError, UnsupportedOpError
from workbench.ir import WORKBENCH_DOMAIN, Graph, TensorSpec, load, node_attributes, source_nodes_of

__all__ = ["build_network"]
log = logging.getLogger(__name__)


def build_network(graph: Graph, config: BuilderConfig | None = None) -> Network:
    config = config or BuilderConfig()
    started = time.perf_counter()
    backend = get_backend(config.backend)
    profile = config.batch_profile
    if config.precision == "int8" and not has_qdq(graph):
        raise BuildError(f"{graph.source}: precision='int8' needs a graph with QuantizeLinear/DequantizeLinear "
                         "nodes; wb.build calibrates and inserts them (build_network does not run engines)")
    graph, batch_axes = _fix_input_shapes(graph, config, profile)
    layers, weights = _lower(graph, config.precision)
    dynamic = profile is not None and profile.min != profile.max
    inputs = [_io_spec(s, batch_axes.get(s.name), dynamic) for s in graph.inputs]
    outputs = [_io_spec(s, None, False) for s in graph.outputs]
    if config.precision != "int8":
        layers, weights = assign_precision(layers, weights, inputs, outputs, config.precision)
    _check_supported(layers, backend, graph.source)
    for layer in layers:
        layer.tactic = backend.tactics(layer)[0].name
    used = {name for layer in layers for name in layer.inputs} | {o.name for o in graph.outputs}
    weights = {k: v for k, v in weights.items() if k in used}
    meta = {"model": graph.name, "source": graph.source, "opsets": dict(graph.model.opset_imports),
            "build_seconds": round(time.perf_counter() - started, 4)}
    log.info("built %d layers for %s in %.3f s", len(layers), backend.name, meta["build_seconds"])
    return Network(layers, weights, inputs, outputs, backend.name, config.precision, profile, meta)


def _fix_input_shapes(graph: Graph, config: BuilderConfig, profile: Profile | None):
    """Give the symbolic batch dim (dim 0) of every input the profile's opt value, apply explicit
    input shapes, and re-infer shapes so every layer has concrete shapes to tune for."""
    given = dict(config.input_shapes or {})
    unknown = set(given) - {s.name for s in graph.inputs}
    if unknown:
        raise BuildError(f"input_shapes names inputs the model does not have: {sorted(unknown)}; "
                         f"inputs are {[s.name for s in graph.inputs]}")
    new_shapes, batch_axes = {}, {}
    for spec in graph.inputs:
        shape = list(spec.shape) if spec.shape is not None else None
        if spec.name in given:
            shape = _merge_given(spec, given[spec.name])
        if profile and shape:
            if not isinstance(shape[0], int):
                shape[0] = profile.opt
            elif spec.name not in given and shape[0] != profile.opt:
                raise BuildError(f"input {spec.name!r} has a fixed batch dimension of {shape[0]} "
                                 f"but the builder was asked for batch {profile.opt}; "
                                 f"export the model with a symbolic batch dimension")
            batch_axes[spec.name] = 0
        if shape is not None and shape != list(spec.shape or []):
            new_shapes[spec.name] = shape
    if not new_shapes:
        return graph, batch_axes
    proto = graph.to_proto()
    for value in proto.graph.input:
        if value.name in new_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, new_shapes[value.name]):
                if isinstance(size, int):
                    dim.Clear()
                    dim.dim_value = size
    del proto.graph.value_info[:]          # symbolic shapes inferred before are now stale
    for out in proto.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.Clear()
    try:
        return load(proto), batch_axes
    except ShapeInferenceError as exc:
        raise ShapeInferenceError(f"with input shapes {new_shapes}: {exc}") from None


def _merge_given(spec: TensorSpec, given) -> list:
    given = [int(d) for d in given]
    if spec.shape is not None and len(spec.shape) != len(given):
        raise BuildError(f"input_shapes[{spec.name!r}] has rank {len(given)}, the model's input has "
                         f"rank {len(spec.shape)} ({spec})")
    for model_dim, dim in zip(spec.shape or (), given):
        if isinstance(model_dim, int) and model_dim != dim:
            raise BuildError(f"input_shapes[{spec.name!r}] = {tuple(given)} conflicts with the model's fixed "
                             f"shape {spec}")
    return given


def _lower(graph: Graph, precision: str) -> tuple[list[Layer], dict[str, np.ndarray]]:
    weights = {name: v.const_value.numpy() for name, v in graph.initializers.items()
               if v.const_value is not None}
    layers, names = [], set()
    for index, node in enumerate(graph.ir_graph):
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and _constant_value(node, weights):
            continue
        name = unique_name(node.name or f"{node.op_type}_{index}", names)
        attrs = node_attributes(node)
        if node.domain == WORKBENCH_DOMAIN:
            attrs.pop("source_nodes", None)
        layers.append(Layer(
            name=name, op=node.op_type, domain=node.domain,
            inputs=[v.name if v is not None else "" for v in node.inputs],
            outputs=[v.name if v is not None else "" for v in node.outputs],
            attrs=attrs, opset=graph.opset(node.domain) or 1, precision=precision,
            source_nodes=source_nodes_of(node),
            output_shapes=[_static_shape(v) for v in node.outputs]))
    return layers, weights


def _constant_value(node: ir.Node, weights: dict[str, np.ndarray]) -> bool:
    """Fold a Constant node into the weights; False if its value kind is not a plain tensor."""
    attrs = node_attributes(node)
    if len(attrs) != 1:
        return False
    (kind, value), = attrs.items()
    dtypes = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
    if kind == "value":
        array = np.asarray(value)
    elif kind in dtypes:
        array = np.asarray(value, dtype=dtypes[kind])
    else:
        return False
    weights[node.outputs[0].name] = array
    return True


def _static_shape(value: ir.Value | None) -> tuple | None:
    if value is None or value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape)


def _check_supported(layers: list[Layer], backend, source: str) -> None:
    missing = [(layer.source_nodes[0], layer.qualified_op) for layer in layers if not backend.supports(layer)]
    if missing:
        ops = sorted({op for _, op in missing})
        listing = "; ".join(f"{op}: {', '.join(repr(n) for n, o in missing if o == op)}" for op in ops)
        raise UnsupportedOpError(
            f"{source}: the {backend.name} backend cannot run {len(missing)} nodes of {len(ops)} op types "
            f"({listing}). Register a plugin for these ops, or run the model with partial conversion so "
            f"they fall back to another executor.", missing)


def _io_spec(spec: TensorSpec, batch_axis: int | None, dynamic_batch: bool) -> IOSpec:
    shape = None if spec.shape is None else tuple(
        d if isinstance(d, int) and not (dynamic_batch and axis == batch_axis) else None
        for axis, d in enumerate(spec.shape))
    if spec.dtype is None:
        raise BuildError(f"graph value {spec.name!r} has no tensor element type; only tensor inputs and "
                         "outputs are supported (not sequences, maps or optionals)")
    return IOSpec(spec.name, spec.dtype, shape, batch_axis)


