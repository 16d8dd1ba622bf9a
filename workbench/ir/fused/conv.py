"""FusedConv: Conv + bias + optional residual add + optional activation ("CBR").

    Y = act(Conv(X, W) + B + Z)        B per output channel, Z the residual (same shape as Y)

`activation` is one of "", Relu, Clip, LeakyRelu, Sigmoid, SiLU, HardSwish; `activation_params`
holds its floats (Clip: min, max; LeakyRelu: alpha).
"""
from workbench.ir.fused.registry import AttrType, Optional, infer_like, register

CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
ACTIVATIONS = ("", "Relu", "Clip", "LeakyRelu", "Sigmoid", "SiLU", "HardSwish")

register(
    "FusedConv", __doc__,
    inputs=[("X", None), ("W", None), ("B", Optional), ("Z", Optional)],
    outputs=[("Y", None)],
    attributes={"auto_pad": AttrType.STRING, "dilations": AttrType.INTS, "group": AttrType.INT,
                "kernel_shape": AttrType.INTS, "pads": AttrType.INTS, "strides": AttrType.INTS,
                "activation": AttrType.STRING, "activation_params": AttrType.FLOATS},
    infer=lambda ctx: infer_like(ctx, "Conv", [0, 1, 2], CONV_ATTRS))
