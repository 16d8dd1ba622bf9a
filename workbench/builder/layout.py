"""Layout assignment: channels-last (NHWC) inside engines of backends that prefer it (CUDA tensor
cores read NHWC convolutions as GEMMs), with an explicit, visible Reformat layer wherever data
crosses between NCHW and NHWC, so the engine's inputs and outputs keep the model's layout.

Layers that compute spatially (Conv, pooling) take NHWC; elementwise layers follow their inputs when
every 4-D input has the output's shape (no broadcasting over a moved axis); channel Concat/Split
follow (their `axis` attribute keeps meaning the logical NCHW axis); everything else stays NCHW and gets its NHWC inputs reformatted
back. A Reformat that only moves size-1 axes (N,1,1,C <-> N,C,1,1) is a free view at run time.

`fold_quantize_into_reformat` then merges a QuantizeLinear into the NCHW -> NHWC Reformat it feeds
(an int8 engine's input): one layer reads the float input once and writes int8 channels-last,
what TensorRT's reformat layers do with precision as well as layout.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.int8_graph import LayerGraph

__all__ = ["assign_layout", "fold_quantize_into_reformat", "NHWC_NATIVE", "TO_NHWC", "TO_NCHW"]

TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
NHWC_NATIVE = {("", "Conv"), ("workbench", "FusedConv"), ("workbench", "FusedQConv"), ("", "MaxPool"),
               ("", "AveragePool"), ("", "GlobalAveragePool"), ("", "GlobalMaxPool"), ("", "BatchNormalization"),
               ("workbench", "QGlobalAveragePool")}
_CHANNEL_AXIS_OPS = {("", "Concat"), ("workbench", "ConcatView"), ("", "Split"), ("workbench", "SplitView")}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSwish",
                "HardSigmoid", "Erf", "Exp", "Abs", "Neg", "Sqrt", "Max", "Min", "Identity", "Cast", "Gelu",
                "Softplus", "PointwiseChain", "RoundTF32", "QuantizeLinear", "DequantizeLinear"}


def assign_layout(layers: list[Layer], weights: dict[str, np.ndarray], graph_outputs: list[str],
                  shapes: dict[str, tuple | None]) -> list[Layer]:
    """Return the layers with `layout` set and Reformat layers inserted; `shapes` (tensor -> NCHW
    shape) is updated with the NHWC shapes of tensors that change layout."""
    nhwc: set[str] = set()                      # tensors stored channels-last
    converted: dict[tuple[str, str], str] = {}  # (tensor, target) -> reformatted tensor
    out: list[Layer] = []

    def reformat(tensor: str, target: str) -> str:
        if (tensor, target) not in converted:
            name = f"{tensor}/to_{target.lower()}"
            perm = TO_NHWC if target == "NHWC" else TO_NCHW
            shape = shapes.get(tensor)
            new_shape = None if shape is None else tuple(shape[p] for p in perm)
            out.append(Layer(name=name, op="Reformat", domain="workbench", inputs=[tensor], outputs=[name],
                             attrs={"perm": perm}, opset=1, precision=_precision_of(tensor, out),
                             source_nodes=[], output_shapes=[new_shape], layout=""))
            shapes[name] = new_shape
            if target == "NHWC":
                nhwc.add(name)
            converted[(tensor, target)] = name
        return converted[(tensor, target)]

    for layer in layers:
        acts = [i for i, n in enumerate(layer.inputs) if n and n not in weights and _rank(shapes.get(n)) == 4]
        mode = _mode(layer, acts, nhwc, shapes, weights)
        if mode == "NHWC":
            for i in acts:
                if layer.inputs[i] not in nhwc:
                    layer.inputs[i] = reformat(layer.inputs[i], "NHWC")
            layer.layout = "NHWC"       # attrs stay ONNX's (axis 1 = channels); tactics map them to storage
            new_shapes = []
            for name, shape in zip(layer.outputs, layer.output_shapes):
                if name and _rank(shape) == 4:
                    nhwc.add(name)
                    shape = tuple(shape[p] for p in TO_NHWC)
                    shapes[name] = shape
                new_shapes.append(shape)
            layer.output_shapes = new_shapes
        else:
            for i in acts:
                if layer.inputs[i] in nhwc:
                    layer.inputs[i] = reformat(layer.inputs[i], "NCHW")
        out.append(layer)
    _restore_outputs(out, graph_outputs, nhwc, shapes)
    return out


def fold_quantize_into_reformat(layers: list[Layer], weights: dict[str, np.ndarray], specs: dict,
                                graph_outputs: list[str], can_run: Callable[[Layer], bool]) -> list[Layer]:
    """QuantizeLinear(x; per-tensor float32 scale, int8 zero point) -> Reformat to NHWC, the Reformat
    its only reader, becomes one Reformat(x, scale, zero_point) where `can_run` says a kernel of the
    backend runs that layer (not a host fallback); `specs` loses the tensor between them."""
    graph = LayerGraph(layers, set(graph_outputs))
    dropped = set()
    for index, reformat in enumerate(layers):
        if reformat.op != "Reformat" or reformat.attrs.get("perm") != TO_NHWC or len(reformat.inputs) != 1:
            continue
        q = graph.produced_by(reformat.inputs[0], "QuantizeLinear")
        if q is None or len(q.inputs) < 3 or len(graph.readers[q.outputs[0]]) != 1 or q.outputs[0] in graph.outputs \
                or specs.get(q.inputs[0], (None, ""))[1] != "float32":
            continue
        scale, zero_point = weights.get(q.inputs[1]), weights.get(q.inputs[2])
        if scale is None or zero_point is None or scale.size != 1 or scale.dtype != np.float32 \
                or zero_point.size != 1 or zero_point.dtype != np.int8:
            continue
        fused = dataclasses.replace(reformat, name=f"{q.name}/to_nhwc", inputs=list(q.inputs[:3]), precision="int8",
                                    source_nodes=list(q.source_nodes))
        if can_run(fused):
            layers[index] = fused
            dropped.add(id(q))
            specs.pop(q.outputs[0], None)
    return [layer for layer in layers if id(layer) not in dropped]


def _mode(layer: Layer, acts: list[int], nhwc: set[str], shapes, weights: dict[str, np.ndarray]) -> str:
    key = (layer.domain, layer.op)
    if key in NHWC_NATIVE:
        return "NHWC" if acts and 0 in acts else ""
    if not acts:
        return ""
    if key in _CHANNEL_AXIS_OPS:
        axis = int(layer.attrs.get("axis", 0))
        return "NHWC" if axis in (1, -3) and all(layer.inputs[i] in nhwc for i in acts) else ""
    if layer.op in _ELEMENTWISE and any(layer.inputs[i] in nhwc for i in acts):
        out_shape = layer.output_shapes[0] if layer.output_shapes else None
        same = all(shapes.get(layer.inputs[i]) is not None and _nchw(shapes, layer.inputs[i], nhwc) == out_shape
                   for i in acts)
        others = [n for i, n in enumerate(layer.inputs) if n and i not in acts]
        scalars = all(_size(shapes.get(n)) == 1 or (n in weights and weights[n].size == 1) for n in others)
        return "NHWC" if same and scalars and out_shape is not None else ""
    return ""


def _nchw(shapes, tensor: str, nhwc: set[str]) -> tuple | None:
    shape = shapes.get(tensor)
    if shape is None or tensor not in nhwc:
        return shape
    return tuple(shape[p] for p in TO_NCHW)


def _restore_outputs(layers: list[Layer], graph_outputs: list[str], nhwc: set[str], shapes) -> None:
    """An engine output computed channels-last is renamed inside and reformatted back to its name."""
    for output in graph_outputs:
        if output not in nhwc:
            continue
        inner = f"{output}/nhwc"
        for layer in layers:
            layer.inputs = [inner if n == output else n for n in layer.inputs]
            layer.outputs = [inner if n == output else n for n in layer.outputs]
        shape = shapes[output]
        shapes[inner] = shape
        back = tuple(shape[p] for p in TO_NCHW)
        layers.append(Layer(name=f"{output}/to_nchw", op="Reformat", domain="workbench", inputs=[inner],
                            outputs=[output], attrs={"perm": TO_NCHW}, opset=1, precision=_precision_of(inner, layers),
                            source_nodes=[], output_shapes=[back], layout=""))
        shapes[output] = back


def _precision_of(tensor: str, layers: list[Layer]) -> str:
    for layer in reversed(layers):
        if tensor in layer.outputs:
            return layer.precision
    return "fp32"


def _rank(shape) -> int:
    return -1 if shape is None else len(shape)


def _size(shape) -> int:
    if shape is None or any(d is None for d in shape):
        return -1
    return int(np.prod(shape)) if shape else 1
