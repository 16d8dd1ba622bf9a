"""Transformer building blocks as single ops: LayerNorm, Gelu, Attention.

    LayerNorm(X, Scale, B):  Y = (X - mean(X)) / sqrt(var(X) + epsilon) * Scale + B
                             mean/var over the trailing axes from `axis`; Scale, B optional
    Gelu(X):                 approximate "none": Y = X/2 (1 + erf(X / sqrt(2)))
                             approximate "tanh": Y = X/2 (1 + tanh(sqrt(2/pi) (X + 0.044715 X^3)))
    Attention(Q, K, V, M):   Y = softmax(scale * Q @ K^T + M, axis=-1) @ V
                             K is [.., S, D], or [.., D, S] already transposed when k_transposed=1;
                             the additive mask M is optional and broadcasts to the scores;
                             qkv_layout "bshd": Q, K, V and Y are [B, S, H, D] (heads after the
                             sequence, k_transposed=0), the scores still [B, H, Sq, Sk]
"""
from __future__ import annotations

import onnx
from onnx import shape_inference

from workbench.ir.fused.registry import AttrType, Optional, register, same_as_input

__all__ = ["infer_attention"]


def infer_attention(ctx: shape_inference.InferenceContext) -> None:
    """Output: Q's dtype and shape, the last dim taken from V's last dim."""
    q = ctx.get_input_type(0)
    v = ctx.get_input_type(2) if ctx.has_input(2) else None
    out = onnx.TypeProto()
    out.tensor_type.elem_type = q.tensor_type.elem_type
    if q.tensor_type.HasField("shape") and len(q.tensor_type.shape.dim) >= 1:
        out.tensor_type.shape.CopyFrom(q.tensor_type.shape)
        last = out.tensor_type.shape.dim[-1]
        last.Clear()
        if v is not None and v.tensor_type.HasField("shape") and len(v.tensor_type.shape.dim) >= 1:
            last.CopyFrom(v.tensor_type.shape.dim[-1])
    ctx.set_output_type(0, out)


register(
    "FusedLayerNorm", __doc__,
    inputs=[("X", None), ("Scale", Optional), ("B", Optional)],
    outputs=[("Y", None)],
    attributes={"axis": AttrType.INT, "epsilon": AttrType.FLOAT},
    infer=same_as_input(0))                     # as LayerNormalization's Y, which needs Scale present

register(
    "FusedGelu", __doc__,
    inputs=[("X", None)],
    outputs=[("Y", None)],
    attributes={"approximate": AttrType.STRING},
    infer=same_as_input(0))

register(
    "FusedAttention", __doc__,
    inputs=[("Q", None), ("K", None), ("V", None), ("Mask", Optional)],
    outputs=[("Y", None)],
    attributes={"scale": AttrType.FLOAT, "k_transposed": AttrType.INT, "qkv_layout": AttrType.STRING},
    infer=infer_attention)
