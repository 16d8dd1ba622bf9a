"""Zero-copy views of one buffer: SplitView and ConcatView.

    SplitView(X) -> Y_0, ..., Y_k      Y_i = X[..., s_i : s_i + split[i], ...] along `axis`,
                                       s_i = split[0] + ... + split[i-1]; each Y_i is a view of X
                                       (strided=1: the views may be strided, every reader takes strides)
    ConcatView(X_0, ..., X_k) -> Y     Y = Concat(X_0, ..., X_k) along `axis`; producers of the
                                       X_i may write straight into their slice of Y's buffer

Values match Split / Concat exactly; what differs is the memory contract, which the memory planner
reads from the nodes' `workbench.*` metadata (see passes/eliminate_concat.py).
"""
from __future__ import annotations

from workbench.ir.fused.registry import AttrType, Variadic, infer_like, register

__all__: list[str] = []

register(
    "SplitView", __doc__,
    inputs=[("X", None)],
    outputs=[("Y", Variadic)],
    attributes={"axis": AttrType.INT, "split": AttrType.INTS, "strided": AttrType.INT},
    # Split-11 still takes `split` as an attribute, so it can infer for us directly.
    infer=lambda ctx: infer_like(ctx, "Split", [0], ("axis", "split"), opset=11,
                                 outputs=range(ctx.get_num_outputs())))

register(
    "ConcatView", __doc__,
    inputs=[("X", Variadic)],
    outputs=[("Y", None)],
    attributes={"axis": AttrType.INT},
    infer=lambda ctx: infer_like(ctx, "Concat", list(range(ctx.get_num_inputs())), ("axis",)))
