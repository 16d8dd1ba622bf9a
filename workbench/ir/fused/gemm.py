"""FusedGemm: Gemm or MatMul + bias + optional residual add + optional activation (a GEMM epilogue).

    Y = act(alpha * op(A) @ op(B) + beta * C + Z)        op(X) = X^T where transX = 1

`epilogue_bias` says where C is added. 0 (Gemm's C): inside Gemm, scaled by beta, in Gemm's
accumulation dtype. 1 (a bias): after the product is rounded to Y's dtype, exactly as
MatMul -> Add does; then A may be N-D with MatMul broadcasting of the batch dims, and C is
anything that broadcasts to Y without changing its shape (e.g. [N]). Z is a residual of Y's shape.
`activation` is one of "", Relu, Clip, LeakyRelu, Sigmoid, Tanh, SiLU, HardSwish, Gelu;
`activation_params` holds its floats (Clip: min, max; LeakyRelu: alpha; Gelu: 1 for the tanh
approximation, else 0).
"""
from __future__ import annotations

from onnx import shape_inference

from workbench.ir.fused.registry import AttrType, Optional, infer_like, register

__all__ = ["GEMM_ATTRS", "ACTIVATIONS", "infer_fused_gemm"]

GEMM_ATTRS = ("transA", "transB", "alpha", "beta")
ACTIVATIONS = ("", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "SiLU", "HardSwish", "Gelu")


def infer_fused_gemm(ctx: shape_inference.InferenceContext) -> None:
    """Infer like MatMul (N-D A) when nothing is transposed, else like Gemm."""
    trans = [ctx.get_attribute(name) for name in ("transA", "transB")]
    if not any(t is not None and t.i for t in trans):
        infer_like(ctx, "MatMul", [0, 1])
        return
    bias = ctx.get_attribute("epilogue_bias")
    gemm_c = [] if bias is not None and bias.i else [2]
    infer_like(ctx, "Gemm", [0, 1] + gemm_c, GEMM_ATTRS)


register(
    "FusedGemm", __doc__,
    inputs=[("A", None), ("B", None), ("C", Optional), ("Z", Optional)],
    outputs=[("Y", None)],
    attributes={"transA": AttrType.INT, "transB": AttrType.INT, "alpha": AttrType.FLOAT, "beta": AttrType.FLOAT,
                "epilogue_bias": AttrType.INT, "activation": AttrType.STRING,
                "activation_params": AttrType.FLOATS},
    infer=infer_fused_gemm)
