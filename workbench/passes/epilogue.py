"""Epilogue matching shared by the Conv and GEMM fusions: what follows a product and can run
inside its kernel.

    P -> [Add(·, Z)] -> [act]        (P: the conv or matmul output, with any bias already folded)

`Z` is a residual: a non-constant tensor added once. The activations a fused kernel applies:

    Relu, Sigmoid, HardSwish               no parameters
    LeakyRelu                              [alpha]
    Clip                                   [min, max] (constant; attributes before opset 11, inputs after)
    SiLU, written as x * Sigmoid(x)        no parameters
    Tanh, Gelu (only when asked for)       Gelu: [1] for the tanh approximation, else [0]

FusedConv applies the first four rows; FusedGemm also Tanh and Gelu (ONNX Gelu or the
`workbench::FusedGelu` that fuse_gelu makes), so it asks for them with `extra_ops`.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import onnx_ir as ir

from workbench.passes.base import Match
from workbench.passes.edit import STANDARD_DOMAINS, attr, const_array, is_fused, is_op, only_consumer

__all__ = ["ACTIVATIONS", "EXTRA_ACTIVATIONS", "activation_after", "residual_operand", "clip_bounds",
           "epilogue_match"]

ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSwish", "SiLU")
EXTRA_ACTIVATIONS = ("Tanh", "Gelu")
_SIMPLE = {"Relu", "Sigmoid", "HardSwish", "LeakyRelu", "Clip"}


def activation_after(value: ir.Value, extra_ops: Iterable[str] = ()) -> tuple[list[ir.Node], str, list[float]] | None:
    """(nodes, activation name, params) of the activation applied to `value`, or None.

    Args:
        value: the output the activation reads (it must be its only reader).
        extra_ops: activations of `EXTRA_ACTIVATIONS` to accept on top of `ACTIVATIONS`.

    >>> activation_after(conv.outputs[0])                 # Conv -> Clip(0, 6)
    ([Clip node], 'Clip', [0.0, 6.0])
    """
    extra = set(extra_ops)
    if not extra <= set(EXTRA_ACTIVATIONS):
        raise ValueError(f"unknown extra activations {sorted(extra - set(EXTRA_ACTIVATIONS))}")
    nxt = only_consumer(value)
    if nxt is None:
        return _silu(value)
    if "Tanh" in extra and is_op(nxt, "Tanh"):
        return [nxt], "Tanh", []
    if "Gelu" in extra and (is_op(nxt, "Gelu") or is_fused(nxt, "FusedGelu")):
        return [nxt], "Gelu", [float(attr(nxt, "approximate", "none") == "tanh")]
    if nxt.op_type not in _SIMPLE or nxt.domain not in STANDARD_DOMAINS:
        return None
    if nxt.op_type == "LeakyRelu":
        return [nxt], "LeakyRelu", [float(attr(nxt, "alpha", 0.01))]
    if nxt.op_type == "Clip":
        bounds = clip_bounds(nxt)
        return None if bounds is None else ([nxt], "Clip", bounds)
    return [nxt], nxt.op_type, []


def _silu(value: ir.Value) -> tuple[list[ir.Node], str, list[float]] | None:
    """x * Sigmoid(x): `value` read by exactly a Sigmoid and the Mul that reads the Sigmoid."""
    users = {id(u.node): u.node for u in value.uses()}
    if len(users) != 2 or value.is_graph_output():
        return None
    sigmoid = next((n for n in users.values() if n.op_type == "Sigmoid"), None)
    mul = next((n for n in users.values() if n.op_type == "Mul"), None)
    if sigmoid and mul and only_consumer(sigmoid.outputs[0]) is mul:
        return [sigmoid, mul], "SiLU", []
    return None


def residual_operand(add: ir.Node, value: ir.Value) -> ir.Value | None:
    """The tensor `Z` of Add(value, Z), Add(Z, value) or a two-input Sum, when it is a residual (not a constant)."""
    if len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is value else add.inputs[0]
    if other is value or const_array(other) is not None:
        return None
    return other


def clip_bounds(clip: ir.Node) -> list[float] | None:
    """[min, max] of a Clip (infinite where absent), or None when a bound is not constant."""
    if "min" in clip.attributes or "max" in clip.attributes:      # opset < 11
        return [float(attr(clip, "min", -np.inf)), float(attr(clip, "max", np.inf))]
    bounds = []
    for index, default in ((1, -np.inf), (2, np.inf)):
        value = clip.inputs[index] if len(clip.inputs) > index else None
        if value is None:
            bounds.append(default)
            continue
        array = const_array(value)
        if array is None:
            return None
        bounds.append(float(array))
    return bounds


def epilogue_match(nodes: list[ir.Node], value: ir.Value, captures: dict[str, Any],
                   extra_ops: Iterable[str] = ()) -> Match | None:
    """`nodes` (a product and its bias Add, `value` their output) grown by an optional residual
    Add and an optional activation, as a Match; None when only the product is left.

    Fills `captures` "residual" (the Z value or None), "activation" (a name or "") and "params".
    """
    captures.update(residual=None, activation="", params=[])
    add = only_consumer(value)
    # Caffe2 exports write the residual sum as a two-input Sum (light_resnet50)
    if (is_op(add, "Add") or is_op(add, "Sum")) and (other := residual_operand(add, value)) is not None:
        captures["residual"] = other
        nodes, value = nodes + [add], add.outputs[0]
    act = activation_after(value, extra_ops)
    if act is not None:
        act_nodes, captures["activation"], captures["params"] = act
        nodes, value = nodes + act_nodes, act_nodes[-1].outputs[0]
    if len(nodes) == 1:
        return None
    return Match(nodes, [value], captures)
