"""The tables and type inference that precision assignment (builder/precision.py) decides with:
which ops stay float32 and why (KEEP_FP32), which operands TF32 rounds (TF32_OPERANDS), the low
dtypes and their version tags, and each tensor's element type by ONNX type inference, one layer
at a time. Which inputs of a layer are data comes from its op's ONNX schema (`_formal_types`).
"""
from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import onnx
from onnx import defs, numpy_helper, shape_inference

from workbench.backends.base import Layer
from workbench.builder.network import IOSpec
from workbench.ir import WORKBENCH_DOMAIN
from workbench.ir.dtypes import np_dtype, onnx_elem_type

__all__ = ["tensor_dtypes", "KEEP_FP32", "TF32_OPERANDS", "LOW_DTYPES", "F32"]
log = logging.getLogger(__name__)

F32 = np.dtype(np.float32)
LOW_DTYPES = {"fp16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}
_TAGS = {F32: "fp32", **{dt: tag for tag, dt in LOW_DTYPES.items()}}

_REDUCTION = "accumulates in the input dtype; a GPU kernel accumulates in float32"
_QUANT = "int8 arithmetic with float32 scales"
KEEP_FP32: dict[tuple[str, str], str] = {
    ("", "Softmax"): "sums exp() in the input dtype; a GPU softmax sums in float32",
    ("", "LogSoftmax"): "sums exp() in the input dtype; a GPU softmax sums in float32",
    **{("", op): _REDUCTION for op in ("ReduceSum", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
                                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "CumSum")},
    ("", "Einsum"): "numpy's einsum accumulates float16 in float16",
    ("", "Range"): "index arithmetic: float16 counts exactly only up to 2048",
    ("", "CastLike"): "its output dtype follows its second input",
    **{("", op): _QUANT for op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                                   "QLinearMatMul", "MatMulInteger", "ConvInteger")},
}
_READS_ANY = {("", "Shape"), ("", "Size"), ("", "Cast")}   # read whichever dtype of their input exists
_SHAPE_OF = {("", "Shape"), ("", "Size")}                 # outputs do not depend on the input's values
TF32_OPERANDS: dict[tuple[str, str], tuple[int, ...]] = {
    ("", "Conv"): (0, 1), ("", "ConvTranspose"): (0, 1), ("", "MatMul"): (0, 1), ("", "Gemm"): (0, 1),
    (WORKBENCH_DOMAIN, "FusedConv"): (0, 1), (WORKBENCH_DOMAIN, "FusedGemm"): (0, 1),
}


def tensor_dtypes(layers: list[Layer], weights: dict[str, np.ndarray],
                  inputs: list[IOSpec]) -> dict[str, np.dtype | None]:
    """Element type of every tensor of a lowered network (None where unknown), by ONNX type
    inference one layer at a time (workbench ops infer through their registered schemas)."""
    dtypes: dict[str, np.dtype | None] = {s.name: np.dtype(s.dtype) for s in inputs}
    dtypes.update({name: value.dtype for name, value in weights.items()})
    for layer in layers:
        found = _infer_outputs(layer, [dtypes.get(n) if n else None for n in layer.inputs])
        dtypes.update((name, dt) for name, dt in zip(layer.outputs, found) if name)
    return dtypes


def _data_dependent(layers: list[Layer], inputs: list[IOSpec]) -> dict[str, bool]:
    """Whether each tensor's values depend on an engine input (Shape and Size cut the link)."""
    data = {s.name: True for s in inputs}
    for layer in layers:
        depends = (layer.domain, layer.op) not in _SHAPE_OF and any(data.get(n, False) for n in layer.inputs if n)
        data.update((name, depends) for name in layer.outputs if name)
    return data


def _schema(layer: Layer) -> defs.OpSchema | None:
    domain = "" if layer.domain == "ai.onnx" else layer.domain
    try:
        return defs.get_schema(layer.op, max(layer.opset, 1), domain)
    except defs.SchemaError:
        return None


def _formal_types(layer: Layer) -> tuple[list[str | None], list[str | None], set[str]] | None:
    """Type string (a type variable such as "T", or a fixed "tensor(float)") of each actual input
    and output, and the schema's type variables; None without a schema."""
    schema = _schema(layer)
    if schema is None:
        return None

    def per_position(params, count):
        out = []
        for i in range(count):
            if i < len(params):
                out.append(params[i].type_str)
            elif params and params[-1].option == defs.OpSchema.FormalParameterOption.Variadic:
                out.append(params[-1].type_str)
            else:
                out.append(None)
        return out
    return (per_position(schema.inputs, len(layer.inputs)), per_position(schema.outputs, len(layer.outputs)),
            {c.type_param_str for c in schema.type_constraints})


def _infer_outputs(layer: Layer, in_dtypes: list[np.dtype | None]) -> list[np.dtype | None]:
    unknown = [None] * len(layer.outputs)
    schema = _schema(layer)
    if schema is None:
        log.debug("%s (%s): no ONNX schema; output dtypes unknown", layer.name, layer.qualified_op)
        return unknown
    names = [f"in{i}" if name else "" for i, name in enumerate(layer.inputs)]
    outs = [f"out{i}" if name else "" for i, name in enumerate(layer.outputs)]
    node = onnx.helper.make_node(layer.op, names, outs, domain=layer.domain)
    for key, value in layer.attrs.items():
        attribute = _attribute(key, value)
        if attribute is not None:
            node.attribute.append(attribute)
    types = {}
    for name, dt in zip(names, in_dtypes):
        if name and dt is not None:
            types[name] = onnx.helper.make_tensor_type_proto(onnx_elem_type(dt), None)
    try:
        inferred = shape_inference.infer_node_outputs(schema, node, types)
    except Exception as exc:     # noqa: BLE001  (onnx raises several types; unknown dtypes are safe)
        log.debug("%s (%s): type inference failed (%s); output dtypes unknown", layer.name, layer.qualified_op, exc)
        return unknown
    found = []
    for name in outs:
        elem = inferred[name].tensor_type.elem_type if name in inferred else 0
        found.append(np_dtype(elem) if elem else None)
    return found


def _attribute(key: str, value) -> onnx.AttributeProto | None:
    """An AttributeProto for type inference; None for values it cannot need (subgraphs, empty lists)."""
    if isinstance(value, np.ndarray):
        value = numpy_helper.from_array(value)
    elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        value = [numpy_helper.from_array(v) for v in value]
    try:
        return onnx.helper.make_attribute(key, value)
    except (TypeError, ValueError):
        return None


def _tag(dtype: np.dtype | None) -> str | None:
    """Version tag of a dtype: "fp32", "fp16", "bf16", else the dtype's name (ints, bool...)."""
    return None if dtype is None else _TAGS.get(np.dtype(dtype), np.dtype(dtype).name)
