"""`build_network`: Graph + BuilderConfig -> Network.

Steps: fix the symbolic batch (and any given input shapes) and re-infer shapes; lower every
node to a Layer (Constant nodes become weights); assign precisions; fuse Q/DQ convolutions into
integer layers (builder/int8_fusion.py); lay out channels-last for
backends that want it; refuse, in one error, every op the backend cannot run; autotune a tactic
per layer; keep only the weights some layer reads; plan the activation memory.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import onnx_ir as ir

from workbench.backends import get_backend
from workbench.backends.base import Layer
from workbench.builder.autotune import autotune
from workbench.builder.config import BuilderConfig, Profile
from workbench.builder.int8_fusion import fuse_int8_layers
from workbench.builder.layout import assign_layout, fold_quantize_into_reformat
from workbench.builder.memory_specs import plan_engine_memory, refresh_specs, tensor_specs, value_shapes
from workbench.builder.network import IOSpec, Network
from workbench.builder.precision import assign_precision, unique_name
from workbench.builder.precision_policy import LayerChoice, apply_policy, describe, needs_int8, uses_policy
from workbench.builder.timing_cache import TimingCache
from workbench.errors import BuildError, ShapeInferenceError, UnsupportedOpError
from workbench.ir import WORKBENCH_DOMAIN, Graph, TensorSpec, load, node_attributes, source_nodes_of
from workbench.passes import optimize
from workbench.quant.insert_qdq import has_qdq
from workbench.quant.sparsity_mode import prepare_sparsity, sparsity_meta

__all__ = ["build_network"]
log = logging.getLogger(__name__)


def build_network(graph: Graph, config: BuilderConfig | None = None, *,
                  precisions: dict[str, LayerChoice] | None = None) -> Network:
    """`precisions`: per-layer decisions already taken (by wb.build, around int8 calibration),
    keyed by each layer's first output tensor; see builder/precision_policy.py."""
    config = config or BuilderConfig()
    started = time.perf_counter()
    backend = get_backend(config.backend, config.tactic_sources)
    profile = config.batch_profile
    if precisions is None and needs_int8(config) and not has_qdq(graph):
        raise BuildError(f"{graph.source}: int8 (precision={describe(config)!r} or an override) needs a graph with "
                         "QuantizeLinear/DequantizeLinear nodes; wb.build calibrates and inserts them "
                         "(build_network does not run engines)")
    original = graph
    graph, batch_axes = _fix_input_shapes(graph, config, profile)
    if backend.name == "cuda" and graph is not original and not has_qdq(graph):
        # with the shapes now static, shape arithmetic (Shape -> Gather -> Concat -> Reshape) folds
        # to constants: nothing computes shapes on the host at run time
        graph, _ = optimize(graph, only=["fold_constants", "eliminate_dead_nodes"])
    graph, sparsity = prepare_sparsity(graph, config.sparsity)
    layers, weights = _lower(graph, config.precision if isinstance(config.precision, str) else "fp32")
    sparse_meta = sparsity_meta(graph, layers, sparsity) if sparsity else {}
    dynamic = profile is not None and profile.min != profile.max
    inputs = [_io_spec(s, batch_axes.get(s.name), dynamic) for s in graph.inputs]
    outputs = [_io_spec(s, None, False) for s in graph.outputs]
    precision_meta = None
    if precisions is not None or uses_policy(config):
        layers, weights, precision_meta = apply_policy(layers, weights, inputs, outputs, config, backend, precisions,
                                                       batch=profile.opt if profile else 1)
    elif config.precision != "int8":
        layers, weights = assign_precision(layers, weights, inputs, outputs, config.precision)
    if config.int8_fusion and has_qdq(graph):
        layers = fuse_int8_layers(layers, weights, [o.name for o in graph.outputs],
                                  relabel_float=precision_meta is None and config.precision == "int8")
    specs = tensor_specs(graph, layers, weights, inputs)
    if getattr(backend, "preferred_layout", "") == "NHWC":
        shapes = {name: shape for name, (shape, _) in specs.items()}
        layers = assign_layout(layers, weights, [o.name for o in graph.outputs], shapes)
        refresh_specs(specs, shapes, layers)
        layers = fold_quantize_into_reformat(layers, weights, specs, [o.name for o in graph.outputs],
                                             lambda layer: _runs_on_device(backend, layer))
    sparse_layers = set(sparse_meta.get("sparse_layers", ()))
    for layer in layers:
        layer.sparse = layer.name in sparse_layers
    _check_supported(layers, backend, graph.source)
    cache = TimingCache(config.timing_cache)
    build_log = autotune(layers, weights, specs, backend, level=config.builder_level, cache=cache,
                         max_workspace_bytes=config.max_workspace_bytes, progress=config.progress)
    cache.save()
    used = {name for layer in layers for name in layer.inputs} | {o.name for o in graph.outputs}
    weights = {k: v for k, v in weights.items() if k in used}
    max_shapes = _max_batch_shapes(original, config, profile, specs, value_shapes(graph))
    streams = config.max_streams if backend.name == "cuda" else 1
    memory = plan_engine_memory(layers, weights, specs, inputs, outputs, backend, max_shapes, streams)
    tensors = {name: {"shape": None if shape is None else list(shape), "dtype": dtype,
                      "max_shape": None if (max_shapes or {}).get(name) is None else list(max_shapes[name])}
               for name, (shape, dtype) in specs.items() if name not in weights}
    meta = {"model": graph.name, "source": graph.source, "opsets": dict(graph.model.opset_imports),
            "build_seconds": round(time.perf_counter() - started, 4), "device": getattr(backend, "device", backend.name),
            "backend_version": str(getattr(backend, "version", "")), "builder_level": config.builder_level,
            "timing_cache": {"path": str(config.timing_cache) if config.timing_cache else None,
                             "hits": cache.hits, "misses": cache.misses},
            "build_log": [dataclasses.asdict(row) for row in build_log], "memory": memory,
            "tensors": tensors, "batch": None if profile is None else profile.opt}
    log.info("built %d layers for %s in %.3f s (timing cache: %d hits, %d misses)", len(layers), backend.name,
             meta["build_seconds"], cache.hits, cache.misses)
    meta.update(sparse_meta, **({"precision": precision_meta} if precision_meta else {}))
    return Network(layers, weights, inputs, outputs, backend.name, describe(config), profile, meta)


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


def _max_batch_shapes(graph: Graph, config: BuilderConfig, profile: Profile | None,
                      specs: dict, at_opt: dict) -> dict | None:
    """Shapes at the profile's max batch (the memory plan must hold the largest batch), by tensor
    name, in each tensor's own layout. Tensors the builder added ("x/to_nhwc", "x/reformat") are
    sized like the model value they derive from."""
    if profile is None or profile.max == profile.opt:
        return None
    fixed, _ = _fix_input_shapes(graph, config, Profile(profile.max, profile.max, profile.max))
    at_max = value_shapes(fixed)
    result = {}
    for name, (shape, _) in specs.items():
        base = name
        while base not in at_opt and "/" in base:
            base = base.rsplit("/", 1)[0]
        small, big = at_opt.get(base), at_max.get(base)
        if shape is None or small is None or big is None:
            continue
        if tuple(shape) == tuple(small):
            result[name] = tuple(big)
        elif len(small) == 4 and tuple(shape) == (small[0], small[2], small[3], small[1]):
            result[name] = (big[0], big[2], big[3], big[1])
    return result


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


def _runs_on_device(backend, layer: Layer) -> bool:
    """A tactic of the backend's own runs `layer` (the host fallback does not count)."""
    tactics = backend.tactics(layer) if hasattr(backend, "tactics") else []
    return any(t.source != "fallback" for t in tactics)


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


