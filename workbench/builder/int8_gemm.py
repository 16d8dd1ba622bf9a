"""Quantized fully connected layers as 1x1 convolutions, so the INT8 convolution fusion runs them.

A Gemm (or MatMul, or FusedGemm) whose operands are a per-tensor int8 activation and a per-output-channel int8 weight is a
1x1 convolution over the activation seen as [N, K, 1, 1] (what TensorRT's FullyConnected layer is):

    DQ(a_q) -> Gemm(., DQ(W_q), C)  [-> act]
        ==>  Reshape(a_q -> [N, K, 1, 1]) -> DQ -> Conv/FusedConv 1x1(., DQ(W_q as [O, K, 1, 1]), C)
             -> Reshape([N, O])

The reshapes are views; `int8_fusion` then makes the convolution a FusedQConv (int8 in, int32
accumulation, one epilogue), and a QuantizeLinear after the Gemm moves before the output reshape
so the layer can write int8. The weight stays the int8 tensor the Q/DQ graph holds, transposed to
[O, K] when the Gemm reads it as [K, O]. Only what the convolution computes alike is rewritten:
a 2-D A, not transposed, alpha = beta = 1, a bias per output channel (or none), no residual, an
activation FusedConv knows.
"""
from __future__ import annotations

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.int8_graph import STANDARD, LayerGraph, qdq_scale, weight_scales
from workbench.ir.fused.conv import ACTIVATIONS

__all__ = ["gemms_as_convs"]


def gemms_as_convs(layers: list[Layer], weights: dict[str, np.ndarray], outputs: set[str]) -> list[Layer]:
    """The layers with every quantized Gemm / FusedGemm that qualifies (module doc) replaced by the
    reshape -> DQ -> 1x1 convolution -> reshape chain; new constants are added to `weights`."""
    graph = LayerGraph(layers, outputs)
    result: list[Layer] = []
    for layer in layers:
        result.extend(_as_conv(layer, graph, weights) or [layer])
    return result


def _is_gemm(layer: Layer) -> bool:
    """Gemm, MatMul (a Gemm without C or transposes) or FusedGemm."""
    return (layer.op in ("Gemm", "MatMul") and layer.domain in STANDARD) or (
        layer.op == "FusedGemm" and layer.domain == "workbench")


def _as_conv(gemm: Layer, graph: LayerGraph, weights: dict) -> list[Layer] | None:
    if not _is_gemm(gemm) or len(gemm.outputs) != 1:
        return None
    a, b, c, z = (gemm.inputs + ["", "", "", ""])[:4]
    attrs = gemm.attrs
    activation = attrs.get("activation", "")
    if z or activation not in ACTIVATIONS or int(attrs.get("transA", 0)) or float(attrs.get("alpha", 1.0)) != 1.0 \
            or (c and not attrs.get("epilogue_bias", 0) and float(attrs.get("beta", 1.0)) != 1.0):
        return None
    dq_a, dq_b = graph.produced_by(a, "DequantizeLinear"), graph.produced_by(b, "DequantizeLinear")
    if dq_a is None or dq_b is None or qdq_scale(dq_a, weights) is None:
        return None
    a_shape = graph.shape(dq_a.inputs[0]) or graph.shape(a)
    weight = _weight_oihw(dq_b, weights, bool(attrs.get("transB", 0)))
    if weight is None or a_shape is None or len(a_shape) != 2 or a_shape[1] != weight[0].shape[1]:
        return None
    q, scales = weight
    o, k = q.shape[:2]
    bias = weights.get(c) if c else None
    if c and (bias is None or bias.ndim == 0 or bias.size != o or bias.shape[-1] != o):
        return None
    n, name, y = a_shape[0], gemm.name, gemm.outputs[0]
    # opset 13 at least: Reshape takes its shape as an input, DequantizeLinear an axis
    common = dict(opset=max(gemm.opset, 13), precision=gemm.precision, source_nodes=list(gemm.source_nodes))
    names = {key: f"{name}/{key}" for key in ("input_nchw", "input_nchw_dq", "weight_oihw", "weight_oihw_scale",
                                              "weight_oihw_zero_point", "weight_oihw_dq", "output_nchw",
                                              "shape_nchw", "shape_2d", "bias")}
    weights[names["weight_oihw"]] = q
    weights[names["weight_oihw_scale"]] = scales
    weights[names["weight_oihw_zero_point"]] = np.zeros(o, np.int8)
    weights[names["shape_nchw"]] = np.array([-1, k, 1, 1], np.int64)
    weights[names["shape_2d"]] = np.array([-1, o], np.int64)
    conv_inputs = [names["input_nchw_dq"], names["weight_oihw_dq"]]
    if bias is not None:
        weights[names["bias"]] = np.ascontiguousarray(bias.reshape(o), np.float32)
        conv_inputs.append(names["bias"])
    conv_attrs = {"kernel_shape": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1}
    if activation:
        conv_attrs.update(activation=activation, activation_params=list(attrs.get("activation_params", [])))
    return [
        Layer(name=f"{name}/input_nchw", op="Reshape", inputs=[dq_a.inputs[0], names["shape_nchw"]],
              outputs=[names["input_nchw"]], output_shapes=[(n, k, 1, 1)], **common),
        Layer(name=f"{name}/input_dq", op="DequantizeLinear", inputs=[names["input_nchw"]] + dq_a.inputs[1:],
              outputs=[names["input_nchw_dq"]], output_shapes=[(n, k, 1, 1)], **common),
        Layer(name=f"{name}/weight_dq", op="DequantizeLinear", attrs={"axis": 0},
              inputs=[names["weight_oihw"], names["weight_oihw_scale"], names["weight_oihw_zero_point"]],
              outputs=[names["weight_oihw_dq"]], output_shapes=[q.shape], **common),
        Layer(name=name, op="FusedConv" if activation else "Conv", domain="workbench" if activation else "",
              inputs=conv_inputs, outputs=[names["output_nchw"]], attrs=conv_attrs,
              output_shapes=[(n, o, 1, 1)], **{**common, "opset": 1 if activation else common["opset"]}),
        Layer(name=f"{name}/output_2d", op="Reshape", inputs=[names["output_nchw"], names["shape_2d"]],
              outputs=[y], output_shapes=[(n, o)], **common)]


def _weight_oihw(dq: Layer, weights: dict, trans_b: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The int8 weight as [O, K, 1, 1] and its float32 per-output-channel scales, or None if it is no
    2-D symmetric int8 weight quantized per output channel (or per tensor)."""
    q = weights.get(dq.inputs[0])
    scales = weight_scales(dq, weights, axis=0 if trans_b else 1) if q is not None and q.ndim == 2 else None
    if scales is None:
        return None
    oihw = np.ascontiguousarray(q if trans_b else q.T)
    return oihw.reshape(oihw.shape[0], -1, 1, 1), scales.astype(np.float32)
