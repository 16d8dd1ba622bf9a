"""`check_layers`: each layer of an engine against the CPU oracle, fed the engine's OWN inputs for
that layer, so a wrong tactic is found exactly where it is (no accumulated error, no blame passed
down the graph) — what Polygraphy's per-layer comparison does for TensorRT engines."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from workbench.builder.autotune import oracle_rows
from workbench.builder.oracle import check_outputs, oracle_outputs

__all__ = ["check_layers"]


def check_layers(engine, feeds: Mapping[str, Any], context=None, last_rows: int | None = None) -> pd.DataFrame:
    """One row per layer: layer, op, tactic, precision, layout, rel_l2 (worst output), ok.

    Args:
        last_rows: check only the last rows of the batch on layers whose rows are independent
            (a float64 CPU run of a whole batch-256 ResNet takes minutes); the last rows are the
            ones a wrong batch stride gets wrong first.
    """
    context = context or engine.create_context()
    names = {n for layer in engine.layers for n in layer.outputs if n}
    values = {**{k: np.asarray(v) for k, v in feeds.items()}, **context.run(feeds, keep=names)}
    values = {k: v.get() if hasattr(v, "get") and not isinstance(v, np.ndarray) else v for k, v in values.items()}
    rows = []
    for layer in engine.layers:
        args = [None if not n else engine.weights[n] if n in engine.weights else values.get(n) for n in layer.inputs]
        got = [values.get(n) for n in layer.outputs if n]
        if any(a is None for n, a in zip(layer.inputs, args) if n) or any(g is None for g in got):
            rows.append((layer.name, layer.qualified_op, layer.tactic, layer.precision, layer.layout, np.nan, False))
            continue
        if last_rows:
            count, sliced = oracle_rows(layer, engine.weights, args)
            if count:
                args = [a[-last_rows:] if i in sliced else a for i, a in enumerate(args)]
                got = [g[-last_rows:] for g in got]
        want = oracle_outputs(layer, engine.weights, args)
        ok, err = check_outputs(layer, got, want)
        rows.append((layer.name, layer.qualified_op, layer.tactic, layer.precision, layer.layout, err, ok))
    return pd.DataFrame(rows, columns=["layer", "op", "tactic", "precision", "layout", "rel_l2", "ok"])
