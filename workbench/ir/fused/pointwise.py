"""PointwiseChain: a run of elementwise ops as one node, for one generated kernel.

    Y = f_n(... f_2(f_1(in0, in1), in2) ...)       every f_i elementwise, numpy broadcasting

`program` is a JSON list of steps {"op", "domain", "inputs", "attrs"}; a step input names a node
input ("in0", "in1", ...), an earlier step's result ("t0", "t1", ...), or "" (omitted optional
input). The last step's result is output 0. Because every step is elementwise, Y has the
broadcast shape of all the inputs; its dtype follows the program (a Cast changes it).
"""
from __future__ import annotations

import json

import onnx
from onnx import shape_inference

from workbench.ir.fused.registry import AttrType, Variadic, register

__all__ = ["parse_program", "broadcast_dims", "program_dtype"]


def parse_program(text: str | bytes) -> list[dict]:
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def program_dtype(program: list[dict], input_dtypes: list[int]) -> int:
    """ONNX element type of the last step, following Cast's `to` (other steps keep their first
    input's type)."""
    types: list[int] = []
    for step in program:
        if step["op"] == "Cast":
            types.append(int(step["attrs"]["to"]))
            continue
        first = next(ref for ref in step["inputs"] if ref)
        types.append(input_dtypes[int(first[2:])] if first.startswith("in") else types[int(first[1:])])
    return types[-1]


def broadcast_dims(shapes: list[list[onnx.TensorShapeProto.Dimension]]) -> list[onnx.TensorShapeProto.Dimension]:
    """Numpy-style broadcast of symbolic shapes: a known dim > 1 wins, 1s drop out, equal
    symbols stay, anything else is unknown."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(1, rank + 1):
        dims = [s[-k] for s in shapes if len(s) >= k]
        dims = [d for d in dims if not (d.HasField("dim_value") and d.dim_value == 1)]
        result = onnx.TensorShapeProto.Dimension()
        known = [d.dim_value for d in dims if d.HasField("dim_value")]
        params = {d.dim_param for d in dims if d.HasField("dim_param")}
        if not dims:
            result.dim_value = 1
        elif known:
            result.dim_value = known[0]
        elif len(params) == 1 and all(d.HasField("dim_param") for d in dims):
            result.dim_param = params.pop()
        out.insert(0, result)
    return out


def _infer(ctx: shape_inference.InferenceContext) -> None:
    types = [ctx.get_input_type(i) for i in range(ctx.get_num_inputs())]
    attribute = ctx.get_attribute("program")
    if attribute is None or not types:
        return
    out = onnx.TypeProto()
    out.tensor_type.elem_type = program_dtype(parse_program(attribute.s), [t.tensor_type.elem_type for t in types])
    if all(t.tensor_type.HasField("shape") for t in types):
        dims = broadcast_dims([list(t.tensor_type.shape.dim) for t in types])
        out.tensor_type.shape.SetInParent()
        out.tensor_type.shape.dim.extend(dims)
    ctx.set_output_type(0, out)


register(
    "PointwiseChain", __doc__,
    inputs=[("inputs", Variadic)],
    outputs=[("Y", None)],
    attributes={"program": AttrType.STRING},
    infer=_infer)
