"""QGlobalAveragePool: GlobalAveragePool on int8 data with a requantizing epilogue, what the builder
makes of DequantizeLinear -> GlobalAveragePool -> QuantizeLinear (as onnxruntime's
com.microsoft::QLinearGlobalAveragePool, symmetric: zero points 0).

    acc = sum of X over the spatial axes          X int8 [N, C, d1, ...]; exact integer sum
    Y   = saturate(round_half_even(float32(acc) * (M / float32(count))))      Y int8 [N, C, 1, ...]

M = s_x / s_y folds the input and output scales (float32); `count` is the number of spatial
positions. M / count is one correctly rounded float32 division, so every backend gets the same
factor whatever its spatial size.
"""
from __future__ import annotations

import onnx

from workbench.ir.fused.registry import register

__all__: list[str] = []


def _infer(ctx) -> None:
    """[N, C, d1, ...] int8 -> [N, C, 1, ...] int8 (rank kept)."""
    x = ctx.get_input_type(0)
    out = onnx.TypeProto()
    out.tensor_type.elem_type = onnx.TensorProto.INT8
    if x.tensor_type.HasField("shape"):
        dims = x.tensor_type.shape.dim
        out.tensor_type.shape.SetInParent()
        for i, dim in enumerate(dims):
            new = out.tensor_type.shape.dim.add()
            if i >= 2:
                new.dim_value = 1
            else:
                new.CopyFrom(dim)
    ctx.set_output_type(0, out)


register("QGlobalAveragePool", __doc__, inputs=[("X", None), ("M", None)], outputs=[("Y", None)],
         attributes={}, infer=_infer, mixed_types=True)
