"""The per-layer profile as a DataFrame (TREx style): one row per layer with its time, share of the
total, arithmetic work, bytes moved, and the rates they imply (what a roofline plot reads)."""
from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.backends.base import Layer

if TYPE_CHECKING:
    from workbench.runtime.engine import Engine

__all__ = ["layer_table", "layer_flops", "COLUMNS"]

COLUMNS = ["layer", "op", "tactic", "precision", "shapes", "time_ms", "percent", "flops", "bytes", "tflops", "gbps"]


def layer_table(engine: "Engine", samples_ms: list[list[float]], batch: int | None) -> pd.DataFrame:
    shapes = engine.tensor_shapes(batch)
    dtypes = engine.tensor_dtypes()
    rows = []
    for layer, samples in zip(engine.layers, samples_ms):
        ms = statistics.median(samples) if samples else 0.0
        ins = [shapes.get(n) if n not in engine.weights else tuple(engine.weights[n].shape) for n in layer.inputs if n]
        outs = [shapes.get(n) for n in layer.outputs if n]
        moved = sum(_nbytes(shapes.get(n) if n not in engine.weights else engine.weights[n].shape,
                            engine.weights[n].dtype if n in engine.weights else dtypes.get(n))
                    for n in list(layer.inputs) + list(layer.outputs) if n)
        flops = layer_flops(layer, ins, outs)
        rows.append({"layer": layer.name, "op": layer.qualified_op, "tactic": layer.tactic, "precision": layer.precision,
                     "shapes": {"in": [list(s) if s else None for s in ins], "out": [list(s) if s else None for s in outs]},
                     "time_ms": ms, "flops": flops, "bytes": moved})
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("percent", "tflops", "gbps")])
    total = table["time_ms"].sum()
    table.insert(6, "percent", 100 * table["time_ms"] / total if total > 0 else 0.0)
    seconds = table["time_ms"].replace(0, np.nan) / 1e3
    table["tflops"] = (table["flops"] / seconds / 1e12).fillna(0.0)
    table["gbps"] = (table["bytes"] / seconds / 1e9).fillna(0.0)
    return table[COLUMNS]


def _nbytes(shape, dtype) -> int:
    if shape is None or dtype is None or any(d is None for d in shape):
        return 0
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _count(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape is not None and None not in shape else 0


def layer_flops(layer: Layer, ins: list, outs: list) -> int:
    """Multiply-adds count twice; elementwise work counts one per output element."""
    op = layer.op
    out = outs[0] if outs else None
    if op in ("Conv", "FusedConv") and len(ins) > 1 and ins[1] is not None and out is not None:
        w = ins[1]                                       # [K, C/group, kh, kw]: one MAC per weight per output pixel
        return 2 * _count(out) * int(np.prod(w[1:]))
    if op in ("MatMul", "Gemm", "FusedGemm") and len(ins) > 1 and ins[0] is not None and ins[1] is not None and out:
        a = ins[0]
        k = a[0] if layer.attrs.get("transA", 0) and len(a) == 2 else a[-1]
        return 2 * _count(out) * int(k)
    if op == "FusedAttention" and len(ins) > 1 and ins[1] is not None and out is not None:
        return 4 * _count(out) * int(_keys(layer, ins[1]))
    return _count(out)


def _keys(layer, k_shape) -> int:
    """Sk, the keys one query attends to, from K's shape and the attention's layout."""
    if len(k_shape) < 2:
        return 1
    if layer.attrs.get("qkv_layout", "bhsd") == "bshd":
        return k_shape[1]
    return k_shape[-1] if layer.attrs.get("k_transposed", 0) else k_shape[-2]
