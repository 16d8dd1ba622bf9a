"""INT8 layer fusion: what TensorRT's builder does with a Q/DQ network, on lowered layers.

A Q/DQ graph says where values are int8; running it as written dequantizes every operand and
convolves in float. This pass turns each quantized convolution into one integer layer:

    Q(x; s_x) -> DQ -> Conv/FusedConv(., DQ(W_q; s_w[k]), b, DQ(Z_q; s_z)) -> act -> Q(.; s_y)
        ==>  FusedQConv(x_q, W_q, M = s_x s_w[k] / s_y, B = b / s_y, Z_q, residual_scale = s_z / s_y)

int8 in, exact integer accumulation, one requantizing epilogue, int8 out (workbench/ir/fused/conv.py),
so activations stay int8 between layers. A convolution whose output is also read in float (or
whose activation does not commute with a positive scale) keeps a float output (s_y = 1) and its
Q layers. Before that, a MaxPool whose readers all quantize with one scale moves after the Q:
max commutes with rounding and saturation (both monotone), so the pool runs on int8 and the
convolution before it can quantize its own output.

The same holds for data movement (Flatten, Reshape, Squeeze, Unsqueeze), so a Q after one moves
before it too. A quantized Gemm first becomes a 1x1 convolution (int8_gemm.py), and
DQ -> GlobalAveragePool -> Q becomes QGlobalAveragePool (ir/fused/pool.py): a CNN's classifier
head runs on int8 from the last convolution to the logits.

Only symmetric per-tensor activation scales (int8 zero point 0) and per-output-channel weight
scales fuse, what `insert_qdq` writes and TensorRT requires; anything else runs as written. In a
precision="int8" build, layers left computing in float get precision fp32 (their CPU and GPU
kernels compute float32), the integer ones keep "int8". The CPU kernels of FusedQConv and
QGlobalAveragePool are the exact emulations the GPU kernels are checked against.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx

from workbench.backends.base import Layer
from workbench.builder.int8_gemm import gemms_as_convs
from workbench.builder.int8_graph import STANDARD, LayerGraph, qdq_scale, rename, weight_scales
from workbench.ir.fused.conv import CONV_ATTRS, GRID_ACTIVATIONS

__all__ = ["fuse_int8_layers"]
log = logging.getLogger(__name__)

_CONV_OPS = {("", "Conv"), ("workbench", "FusedConv")}
_MONOTONE_POOLS = {"MaxPool", "GlobalMaxPool"}
_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Unsqueeze"}
_INTEGER_OPS = {"QuantizeLinear", "DequantizeLinear", "FusedQConv", "QGlobalAveragePool"}


def fuse_int8_layers(layers: list[Layer], weights: dict[str, np.ndarray], graph_outputs: list[str],
                     relabel_float: bool = True) -> list[Layer]:
    """The layers with every fusable quantized convolution made a FusedQConv (see the module doc);
    new weights (multipliers, scaled biases) are added to `weights`. `relabel_float`: the build is
    precision="int8", where "int8" is every layer's default label, so layers left computing in
    float become fp32; with a precision policy its per-layer labels stand."""
    outputs = set(graph_outputs)
    layers = gemms_as_convs(list(layers), weights, outputs)
    layers = _quantize_earlier(layers, weights, outputs)
    fused = 0
    for index, layer in enumerate(layers):
        if layer.op == "GlobalAveragePool" and layer.domain in STANDARD:
            replacement = _fuse_global_pool(layer, LayerGraph(layers, outputs), weights)
        elif (layer.domain if layer.domain != "ai.onnx" else "", layer.op) in _CONV_OPS:
            replacement = _fuse_conv(layer, LayerGraph(layers, outputs), weights)
        else:
            continue
        if replacement is not None:
            layers[index] = replacement
            fused += 1
    layers = _drop_unread_qdq(layers, outputs)
    if relabel_float:
        _float_layers_to_fp32(layers)
    if fused:
        log.info("int8 fusion: %d layers run on int8 (FusedQConv, QGlobalAveragePool: int8 in, exact integer "
                 "sums, requantize)", fused)
    return layers


def _quantize_earlier(layers: list[Layer], weights: dict, outputs: set[str]) -> list[Layer]:
    """op(x) -> Q(s) becomes Q(s) -> op on int8 for max pools (exact: both are monotone) and for data
    movement (exact: Q is elementwise). Last layer first, so a Q climbs a chain of them."""
    movable = [l for l in layers if l.domain in STANDARD and (l.op in _MONOTONE_POOLS or l.op in _PASS_THROUGH)]
    for op in reversed(movable):
        graph = LayerGraph(layers, outputs)
        readers = _quantize_readers(op, graph, weights) if len(op.outputs) == 1 else None
        if readers is None:
            continue
        first, *others = readers
        quantized = first.outputs[0]
        rename(layers, {r.outputs[0]: quantized for r in others})
        layers = [l for l in layers if not any(l is r for r in others)]
        layers.remove(first)
        first.inputs = [op.inputs[0]] + first.inputs[1:]
        first.outputs = [f"{op.inputs[0]}_quantized_for_{op.name}"]
        first.output_shapes = [graph.shape(op.inputs[0])]
        op.inputs = [first.outputs[0]] + op.inputs[1:]
        op.outputs = [quantized]
        layers.insert(layers.index(op), first)
    return layers


def _quantize_readers(layer: Layer, graph: LayerGraph, weights: dict) -> list[Layer] | None:
    """The readers of `layer`'s (first) output when all of them quantize it with one symmetric scale
    and it is no engine output; else None."""
    y = layer.outputs[0]
    readers = graph.readers.get(y, [])
    scales = {qdq_scale(r, weights) if r.op == "QuantizeLinear" and r.inputs[0] == y else None for r in readers}
    return readers if readers and y not in graph.outputs and None not in scales and len(scales) == 1 else None


def _absorb_quantize(layer: Layer, graph: LayerGraph, weights: dict) -> tuple[float, str] | None:
    """When every reader of `layer`'s output is a QuantizeLinear of one scale s_y: (s_y, the name the
    integer layer writes). The readers are cut off (their outputs renamed, dropped later as unread)."""
    readers = _quantize_readers(layer, graph, weights)
    if readers is None:
        return None
    out = readers[0].outputs[0]
    rename(graph.layers, {r.outputs[0]: out for r in readers[1:]})
    for r in readers:                       # unread now: dropped with the other dead Q/DQ
        r.outputs = [f"{r.outputs[0]}/fused_into_{layer.name}"]
    return qdq_scale(readers[0], weights), out


def _fuse_global_pool(pool: Layer, graph: LayerGraph, weights: dict) -> Layer | None:
    """DQ(x_q; s_x) -> GlobalAveragePool -> Q(s_y)  ==>  QGlobalAveragePool(x_q, M = s_x / s_y)."""
    dq = graph.produced_by(pool.inputs[0], "DequantizeLinear")
    s_x = qdq_scale(dq, weights) if dq is not None else None
    if s_x is None or len(pool.outputs) != 1:
        return None
    absorbed = _absorb_quantize(pool, graph, weights)
    if absorbed is None:
        return None
    s_y, out = absorbed
    weights[f"{pool.name}/multiplier"] = np.array(np.float64(s_x) / s_y, np.float32)
    return Layer(name=pool.name, op="QGlobalAveragePool", domain="workbench",
                 inputs=[dq.inputs[0], f"{pool.name}/multiplier"], outputs=[out], opset=1, precision="int8",
                 source_nodes=list(pool.source_nodes), output_shapes=pool.output_shapes)


def _fuse_conv(conv: Layer, graph: LayerGraph, weights: dict) -> Layer | None:
    inputs = conv.inputs + [""] * (4 - len(conv.inputs))
    dq_x, dq_w = graph.produced_by(inputs[0], "DequantizeLinear"), graph.produced_by(inputs[1], "DequantizeLinear")
    if dq_x is None or dq_w is None:
        return None
    s_x = qdq_scale(dq_x, weights)
    s_w = weight_scales(dq_w, weights)
    bias = weights.get(inputs[2]) if inputs[2] else None
    if s_x is None or s_w is None or (inputs[2] and bias is None):
        return None
    residual, residual_scale = inputs[3], 1.0
    dq_z = graph.produced_by(residual, "DequantizeLinear") if residual else None
    s_z = qdq_scale(dq_z, weights) if dq_z is not None else None
    if s_z is not None:
        residual, residual_scale = dq_z.inputs[0], s_z
    activation = conv.attrs.get("activation", "") if conv.op == "FusedConv" else ""
    params = list(conv.attrs.get("activation_params", []))
    y = conv.outputs[0]
    s_y, out = (_absorb_quantize(conv, graph, weights) if activation in GRID_ACTIVATIONS else None) or (1.0, y)
    name = conv.name
    weights[f"{name}/multiplier"] = (np.float64(s_x) * s_w.astype(np.float64) / s_y).astype(np.float32)
    new_inputs = [dq_x.inputs[0], dq_w.inputs[0], f"{name}/multiplier"]
    if bias is not None:
        weights[f"{name}/bias_on_grid"] = (bias.astype(np.float64) / s_y).astype(np.float32)
    new_inputs += [f"{name}/bias_on_grid" if bias is not None else "", residual]
    while new_inputs[-1] == "":
        new_inputs.pop()
    attrs = {k: v for k, v in conv.attrs.items() if k in CONV_ATTRS}
    if activation:
        attrs["activation"] = activation
        attrs["activation_params"] = [p / s_y for p in params] if activation == "Clip" else params
    attrs["residual_scale"] = float(np.float32(residual_scale / s_y))
    attrs["output_dtype"] = onnx.TensorProto.INT8 if s_y != 1.0 or out != y else onnx.TensorProto.FLOAT
    return Layer(name=name, op="FusedQConv", domain="workbench", inputs=new_inputs, outputs=[out], attrs=attrs,
                 opset=1, precision="int8", source_nodes=list(conv.source_nodes), output_shapes=conv.output_shapes)


def _drop_unread_qdq(layers: list[Layer], outputs: set[str]) -> list[Layer]:
    """Remove Q/DQ layers nobody reads any more (the fused ones), repeatedly (DQ before Q)."""
    while True:
        read = {n for layer in layers for n in layer.inputs if n} | outputs
        keep = [l for l in layers if not (l.op in ("QuantizeLinear", "DequantizeLinear")
                                          and not any(n in read for n in l.outputs if n))]
        if len(keep) == len(layers):
            return keep
        layers = keep


def _float_layers_to_fp32(layers: list[Layer]) -> None:
    """Layers of an int8 build that neither are integer ops nor read int8 data compute in float32."""
    int8: set[str] = set()
    for layer in layers:
        integer = layer.op in _INTEGER_OPS or any(n in int8 for n in layer.inputs)
        if layer.op in ("QuantizeLinear", "QGlobalAveragePool") or (
                layer.op == "FusedQConv" and layer.attrs["output_dtype"] == onnx.TensorProto.INT8) \
                or ((layer.op in _MONOTONE_POOLS or layer.op in _PASS_THROUGH) and integer):
            int8.update(n for n in layer.outputs if n)
        if layer.precision == "int8" and not integer:
            layer.precision = "fp32"
