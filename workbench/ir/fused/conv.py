"""FusedConv: Conv + bias + optional residual add + optional activation ("CBR").

    Y = act(Conv(X, W) + B + Z)        B per output channel, Z the residual (same shape as Y)

`activation` is one of "", Relu, Clip, LeakyRelu, Sigmoid, SiLU, HardSwish; `activation_params`
holds its floats (Clip: min, max; LeakyRelu: alpha).
"""
from workbench.ir.fused.registry import AttrType, Optional, infer_like, register

CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
ACTIVATIONS = ("", "Relu", "Clip", "LeakyRelu", "Sigmoid", "SiLU", "HardSwish")
GRID_ACTIVATIONS = ("", "Relu", "LeakyRelu", "Clip")   # commute with a positive scale: FusedQConv may quantize after them

register(
    "FusedConv", __doc__,
    inputs=[("X", None), ("W", None), ("B", Optional), ("Z", Optional)],
    outputs=[("Y", None)],
    attributes={"auto_pad": AttrType.STRING, "dilations": AttrType.INTS, "group": AttrType.INT,
                "kernel_shape": AttrType.INTS, "pads": AttrType.INTS, "strides": AttrType.INTS,
                "activation": AttrType.STRING, "activation_params": AttrType.FLOATS},
    infer=lambda ctx: infer_like(ctx, "Conv", [0, 1, 2], CONV_ATTRS))


def _infer_qconv(ctx) -> None:
    """Shape like Conv over (X, W); element type from `output_dtype` (an ONNX TensorProto code)."""
    import onnx
    infer_like(ctx, "ConvInteger", [0, 1], CONV_ATTRS, opset=10)   # Conv refuses int8 operands
    code = ctx.get_attribute("output_dtype")
    out = onnx.TypeProto()
    out.CopyFrom(ctx.get_output_type(0))
    out.tensor_type.elem_type = code.i if code is not None else onnx.TensorProto.INT8
    ctx.set_output_type(0, out)


register(
    "FusedQConv",
    """FusedQConv: an INT8 convolution with a requantizing epilogue, what the builder makes of
    DequantizeLinear -> (Fused)Conv -> QuantizeLinear (TensorRT's Q/DQ fusion).

        acc = Conv(X, W)                      X, W int8; exact integer sum (int32 on GPUs)
        v   = float32(acc) * M + B + float32(Z) * residual_scale      float32, per output channel M, B
        Y   = saturate(round_half_even(act(v)))    output_dtype INT8 (the next layer's grid), or
        Y   = act(v) in output_dtype FLOAT / FLOAT16

    M = s_x * s_w[k] / s_y and B = bias / s_y fold the input, weight and output scales (s_y = 1 for
    a float output); Z is the optional residual (int8 with its scale folded into residual_scale).
    """,
    inputs=[("X", None), ("W", None), ("M", None), ("B", Optional), ("Z", Optional)],
    outputs=[("Y", None)],
    attributes={"auto_pad": AttrType.STRING, "dilations": AttrType.INTS, "group": AttrType.INT,
                "kernel_shape": AttrType.INTS, "pads": AttrType.INTS, "strides": AttrType.INTS,
                "activation": AttrType.STRING, "activation_params": AttrType.FLOATS,
                "residual_scale": AttrType.FLOAT, "output_dtype": AttrType.INT},
    infer=_infer_qconv, mixed_types=True)
