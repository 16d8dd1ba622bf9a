"""`register` a fused op's ONNX schema, and `infer_like` to infer its shapes through a standard op."""
from __future__ import annotations

from typing import Callable, Iterable

import onnx
import onnx.defs as defs
from onnx import shape_inference

__all__ = ["register", "infer_like", "FUSED_OPS", "WORKBENCH_DOMAIN", "OPSET_VERSION", "AttrType", "Optional",
           "Variadic"]

WORKBENCH_DOMAIN = "workbench"
OPSET_VERSION = 1
AttrType = defs.OpSchema.AttrType
Optional = defs.OpSchema.FormalParameterOption.Optional
Variadic = defs.OpSchema.FormalParameterOption.Variadic
FUSED_OPS: dict[str, defs.OpSchema] = {}

_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)", "tensor(int8)",
          "tensor(uint8)", "tensor(int32)", "tensor(int64)", "tensor(bool)"]
InferFn = Callable[[shape_inference.InferenceContext], None]


def register(name: str, doc: str, inputs: Iterable[tuple[str, object]], outputs: Iterable[tuple[str, object]],
             attributes: dict[str, AttrType], infer: InferFn, mixed_types: bool = False) -> None:
    """Register `workbench::name` (idempotent). Inputs/outputs are (name, option) pairs, option one of
    None (single), `Optional` or `Variadic`; every type is allowed (T), since fused ops are generic.
    `mixed_types`: each input and output has its own type variable (int8 data with float32 scales)
    instead of one T for all. A `source_nodes` STRINGS attribute is always added."""
    if name in FUSED_OPS:
        return
    variables = iter(f"T{i}" for i in range(64)) if mixed_types else None

    def param(pname, option):
        variable = next(variables) if variables else "T"
        if option is None:
            return defs.OpSchema.FormalParameter(pname, variable)
        return defs.OpSchema.FormalParameter(pname, variable, "", param_option=option,
                                             is_homogeneous=False, min_arity=1)
    attrs = {"source_nodes": AttrType.STRINGS, **attributes}
    formal_inputs, formal_outputs = [param(n, o) for n, o in inputs], [param(n, o) for n, o in outputs]
    used = sorted({p.type_str for p in formal_inputs + formal_outputs})
    schema = defs.OpSchema(
        name, WORKBENCH_DOMAIN, OPSET_VERSION, doc=doc, inputs=formal_inputs, outputs=formal_outputs,
        type_constraints=[(v, _TYPES, "any numeric tensor") for v in used],
        attributes=[defs.OpSchema.Attribute(a, kind, "", required=False) for a, kind in attrs.items()])
    schema.set_type_and_shape_inference_function(infer)
    defs.register_schema(schema)
    FUSED_OPS[name] = schema


def infer_like(ctx: shape_inference.InferenceContext, op_type: str, inputs: list[int | None],
               attributes: Iterable[str] = (), opset: int = 17, outputs: Iterable[int] = (0,)) -> None:
    """Infer outputs as the standard op `op_type` would, fed the fused node's inputs `inputs`
    (indices; None leaves that standard input empty) and its attributes named in `attributes`."""
    names, types = [], {}
    for position, index in enumerate(inputs):
        if index is None or index >= ctx.get_num_inputs() or not ctx.has_input(index):
            names.append("")
            continue
        names.append(f"in{position}")
        types[f"in{position}"] = ctx.get_input_type(index)
    node = onnx.helper.make_node(op_type, names, [f"out{i}" for i in outputs])
    for attr in attributes:
        proto = ctx.get_attribute(attr)
        if proto is not None:
            node.attribute.append(proto)
    schema = defs.get_schema(op_type, opset, "")
    inferred = shape_inference.infer_node_outputs(schema, node, types)
    for i in outputs:
        if f"out{i}" in inferred:
            ctx.set_output_type(i, inferred[f"out{i}"])


def same_as_input(index: int = 0) -> InferFn:
    """Inference function: output 0 has the type and shape of input `index`."""
    def infer(ctx: shape_inference.InferenceContext) -> None:
        out = onnx.TypeProto()
        out.CopyFrom(ctx.get_input_type(index))
        ctx.set_output_type(0, out)
    return infer
