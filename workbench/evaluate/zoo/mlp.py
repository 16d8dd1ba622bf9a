"""A small multilayer perceptron, random weights.

The smallest model in the zoo: fast enough for exhaustive tests, and it has both spellings
of a fully connected layer (Gemm, and MatMul+Add) so the Gemm-matching passes see each.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import onnx

from workbench.evaluate.zoo._common import FLOAT, Dim, GraphBuilder

__all__ = ["mlp"]


def mlp(seed: int = 0, batch: Dim = "N", in_features: int = 64, hidden: Sequence[int] = (128, 64),
        classes: int = 10, softmax: bool = False) -> onnx.ModelProto:
    """Input "input" [batch,in_features]; output "logits" (or "probabilities" with softmax).

    Hidden layers are Gemm+Relu except the last hidden layer, written as MatMul+Add+Relu.
    """
    g = GraphBuilder(seed)
    x = g.input("input", FLOAT, [batch, in_features])
    fin = in_features
    for i, fout in enumerate(hidden, start=1):
        p = f"fc{i}"
        if i == len(hidden):
            w = g.const(f"{p}.weight", g.normal((fin, fout), math.sqrt(2.0 / fin)))
            b = g.const(f"{p}.bias", g.uniform((fout,), -0.05, 0.05))
            x = g.node("Add", [g.node("MatMul", [x, w], f"{p}/MatMul"), b], f"{p}/Add")
        else:
            x = g.gemm(x, fin, fout, p, gain=2.0)
        x = g.relu(x, f"relu{i}")
        fin = fout
    p = f"fc{len(hidden) + 1}"
    w = g.const(f"{p}.weight", g.normal((classes, fin), math.sqrt(1.0 / fin)))
    b = g.const(f"{p}.bias", g.uniform((classes,), -0.05, 0.05))
    x = g.node("Gemm", [x, w, b], p, outputs=["logits"], transB=1)
    out = "logits"
    if softmax:
        out = g.node("Softmax", [x], "softmax", outputs=["probabilities"], axis=-1)
    return g.model("mlp", [(out, FLOAT, [batch, classes])],
                   doc=f"MLP {in_features}->{list(hidden)}->{classes}, random weights seed={seed}")
