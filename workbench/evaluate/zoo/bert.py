"""A BERT encoder shaped the way PyTorch/HuggingFace exporters write it, random weights.

Transformer exports are not tidy: shapes are computed at run time (Shape -> Gather ->
Concat feeding Reshape/Expand), the attention mask goes through Unsqueeze/Expand/Cast/Sub/
Where, GELU is spelled out with Erf, and LayerNorm appears as the opset-17 op. That is the
graph the shape-propagation, constant-folding and attention/GELU/LayerNorm fusion passes
have to see through, so this builder reproduces it rather than a clean textbook graph.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

from workbench.evaluate.zoo._common import FLOAT, INT64, Dim, GraphBuilder

__all__ = ["bert", "bert_base"]


def _dense(g: GraphBuilder, x: str, fin: int, fout: int, p: str, gain: float = 1.0) -> str:
    """Linear as exporters write it: MatMul with a [in, out] weight, then Add of the bias."""
    w = g.const(f"{p}.weight", g.normal((fin, fout), math.sqrt(gain / fin)))
    b = g.const(f"{p}.bias", g.uniform((fout,), -0.05, 0.05))
    return g.node("Add", [g.node("MatMul", [x, w], f"{p}/MatMul"), b], f"{p}/Add")


def _layernorm(g: GraphBuilder, x: str, hidden: int, p: str, output: str | None = None) -> str:
    scale = g.const(f"{p}.weight", g.uniform((hidden,), 0.8, 1.2))
    bias = g.const(f"{p}.bias", g.uniform((hidden,), -0.1, 0.1))
    return g.node("LayerNormalization", [x, scale, bias], p, outputs=[output] if output else None, axis=-1,
                  epsilon=1e-12)


def _heads(g: GraphBuilder, x: str, shape: str, perm: list[int], p: str) -> str:
    return g.node("Transpose", [g.node("Reshape", [x, shape], f"{p}/Reshape")], f"{p}/Transpose", perm=perm)


def _gelu(g: GraphBuilder, x: str, p: str) -> str:
    """x * 0.5 * (1 + erf(x / sqrt(2))), op for op as torch exports nn.GELU()."""
    e = g.node("Erf", [g.node("Div", [x, "const.sqrt2"], f"{p}/Div")], f"{p}/Erf")
    y = g.node("Mul", [x, g.node("Add", [e, "const.one"], f"{p}/Add")], f"{p}/Mul")
    return g.node("Mul", [y, "const.half"], f"{p}/Mul_half")


def _layer(g: GraphBuilder, x: str, mask: str, heads_shape: str, hidden: int, heads: int,
           inter: int, p: str, output: str | None) -> str:
    a = f"{p}.attention.self"
    q = _heads(g, _dense(g, x, hidden, hidden, f"{a}.query"), heads_shape, [0, 2, 1, 3], f"{a}.query")
    k = _heads(g, _dense(g, x, hidden, hidden, f"{a}.key"), heads_shape, [0, 2, 3, 1], f"{a}.key")
    v = _heads(g, _dense(g, x, hidden, hidden, f"{a}.value"), heads_shape, [0, 2, 1, 3], f"{a}.value")
    s = g.node("Div", [g.node("MatMul", [q, k], f"{a}/scores"), "const.sqrt_head_dim"], f"{a}/scale")
    s = g.node("Softmax", [g.node("Add", [s, mask], f"{a}/mask_add")], f"{a}/Softmax", axis=-1)
    ctx = g.node("Transpose", [g.node("MatMul", [s, v], f"{a}/context")], f"{a}/context/Transpose",
                 perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", [ctx, "const.merge_heads_shape"], f"{a}/context/Reshape")
    y = _dense(g, ctx, hidden, hidden, f"{p}.attention.output.dense")
    y = g.node("Add", [y, x], f"{p}.attention.output/residual")
    x = _layernorm(g, y, hidden, f"{p}.attention.output.LayerNorm")
    h = _gelu(g, _dense(g, x, hidden, inter, f"{p}.intermediate.dense"), f"{p}.intermediate.gelu")
    y = g.node("Add", [_dense(g, h, inter, hidden, f"{p}.output.dense", gain=2.0), x], f"{p}.output/residual")
    return _layernorm(g, y, hidden, f"{p}.output.LayerNorm", output)


def bert(seed: int = 0, batch: Dim = "N", layers: int = 2, hidden: int = 128, heads: int = 2,
         seq_len: Dim = 16, vocab: int = 1000, intermediate: int | None = None,
         max_position: int = 512, type_vocab: int = 2) -> onnx.ModelProto:
    """BERT encoder + pooler. Inputs input_ids, attention_mask [batch,seq] int64; outputs
    last_hidden_state [batch,seq,hidden] and pooler_output [batch,hidden]. `seq_len` may be
    a name ("S") for a symbolic sequence length up to `max_position`."""
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    if isinstance(seq_len, int) and seq_len > max_position:
        raise ValueError(f"seq_len={seq_len} exceeds max_position={max_position}")
    inter = intermediate or 4 * hidden
    head_dim = hidden // heads
    g = GraphBuilder(seed)
    ids = g.input("input_ids", INT64, [batch, seq_len])
    mask = g.input("attention_mask", INT64, [batch, seq_len])
    for name, value in [("const.sqrt2", math.sqrt(2.0)), ("const.one", 1.0), ("const.half", 0.5),
                        ("const.sqrt_head_dim", math.sqrt(head_dim)), ("const.mask_value", -10000.0)]:
        g.const(name, np.float32(value))
    g.const("const.index0", np.array([0], np.int64))
    g.const("const.index1", np.array([1], np.int64))
    g.const("const.unsqueeze_axes", np.array([1, 2], np.int64))
    g.const("const.heads_dims", np.array([heads, head_dim], np.int64))
    g.const("const.merge_heads_shape", np.array([0, 0, hidden], np.int64))
    g.const("const.first_token", np.array(0, np.int64))

    # run-time shapes, as exporters compute them for dynamic axes
    shape = g.node("Shape", [ids], "embeddings/Shape")
    bsz = g.node("Gather", [shape, "const.index0"], "embeddings/batch_size", axis=0)
    seq = g.node("Gather", [shape, "const.index1"], "embeddings/seq_len", axis=0)
    heads_shape = g.node("Concat", [bsz, seq, "const.heads_dims"], "encoder/heads_shape", axis=0)

    # embeddings: word + token type (buffered zeros, sliced and expanded) + position
    e = "embeddings"
    word = g.const(f"{e}.word_embeddings.weight", g.normal((vocab, hidden), 1.0))
    ttab = g.const(f"{e}.token_type_embeddings.weight", g.normal((type_vocab, hidden), 0.5))
    ptab = g.const(f"{e}.position_embeddings.weight", g.normal((max_position, hidden), 0.5))
    g.const(f"{e}.position_ids", np.arange(max_position, dtype=np.int64)[None])
    g.const(f"{e}.token_type_ids", np.zeros((1, max_position), np.int64))
    pos_ids = g.node("Slice", [f"{e}.position_ids", "const.index0", seq, "const.index1"], f"{e}/position_ids/Slice")
    tt_ids = g.node("Slice", [f"{e}.token_type_ids", "const.index0", seq, "const.index1"], f"{e}/token_type_ids/Slice")
    tt_ids = g.node("Expand", [tt_ids, shape], f"{e}/token_type_ids/Expand")
    x = g.node("Gather", [word, ids], f"{e}.word_embeddings", axis=0)
    tt = g.node("Gather", [ttab, tt_ids], f"{e}.token_type_embeddings", axis=0)
    x = g.node("Add", [x, tt], f"{e}/add_token_type")
    pos = g.node("Gather", [ptab, pos_ids], f"{e}.position_embeddings", axis=0)
    x = g.node("Add", [x, pos], f"{e}/add_position")
    x = _layernorm(g, x, hidden, f"{e}.LayerNorm")

    # additive mask [B,1,S,S]: 0 where attended, -10000 where padded (HF's 4-d mask recipe)
    m = g.node("Unsqueeze", [mask, "const.unsqueeze_axes"], "mask/Unsqueeze")
    target = g.node("Concat", [bsz, "const.index1", seq, seq], "mask/target_shape", axis=0)
    m = g.node("Cast", [g.node("Expand", [m, target], "mask/Expand")], "mask/Cast", to=TensorProto.FLOAT)
    inv = g.node("Sub", ["const.one", m], "mask/invert")
    padded = g.node("Cast", [inv], "mask/is_padding", to=TensorProto.BOOL)
    m = g.node("Where", [padded, "const.mask_value", inv], "mask/Where")

    for i in range(layers):
        out = "last_hidden_state" if i == layers - 1 else None
        x = _layer(g, x, m, heads_shape, hidden, heads, inter, f"encoder.layer.{i}", out)
    if layers == 0:
        x = g.node("Identity", [x], "encoder/output", outputs=["last_hidden_state"])

    first = g.node("Gather", [x, "const.first_token"], "pooler/first_token", axis=1)
    pooled = g.gemm(first, hidden, hidden, "pooler.dense")
    g.node("Tanh", [pooled], "pooler.activation", outputs=["pooler_output"])
    return g.model("bert", [("last_hidden_state", FLOAT, [batch, seq_len, hidden]),
                            ("pooler_output", FLOAT, [batch, hidden])],
                   doc=f"BERT encoder layers={layers} hidden={hidden} heads={heads}, random weights seed={seed}")


def bert_base(seed: int = 0, batch: Dim = "N", seq_len: Dim = 128, layers: int = 12) -> onnx.ModelProto:
    """BERT-base (uncased) dimensions, the model of the GPU benchmark: hidden 768, 12 heads,
    intermediate 3072, vocab 30522, 12 layers (`layers` fewer for quick checks). Same inputs and
    outputs as `bert`."""
    return bert(seed, batch, layers=layers, hidden=768, heads=12, seq_len=seq_len, vocab=30522,
                intermediate=3072)
