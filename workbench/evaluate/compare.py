"""Accuracy comparison: how far an engine's numbers are from a reference, end to end and layer by layer.

`compare` answers "did building (fp16, int8, fusions) change the answers?" with one row per engine
output; `compare_layers` answers "where did it start to go wrong?" the way Polygraphy does, by
running both engines on the same feeds, keeping every tensor both produce under the same name and
marking the first layer whose error jumps. Both return one tidy DataFrame (TREx style) so the
notebook, the CLI and the HTML report read the same table; `plot_layer_errors` draws it.

The metrics, on x (engine) and r (reference), both cast to float64:

    max_abs  = max |x - r|
    rel_l2   = ||x - r|| / ||r||              (0 when both are zero, inf when only r is)
    cosine   = <x, r> / (||x|| ||r||)         (1 when both are zero, 0 when only one is)
    sqnr_db  = 10 log10(sum r^2 / sum (x - r)^2)   (inf when x == r)

Example:
    >>> df = compare(wb.build(graph, wb.BuilderConfig(precision="fp16")), graph, {"input": x}, labels=y)
    >>> df[["output", "rel_l2", "sqnr_db", "top1_agreement", "accuracy", "reference.accuracy"]]
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.builder import BuilderConfig
from workbench.errors import WorkbenchError
from workbench.ir import Graph
from workbench.runtime import Engine, build

__all__ = ["compare", "compare_layers", "plot_layer_errors", "JUMP_FACTOR", "JUMP_FLOOR"]
log = logging.getLogger(__name__)

JUMP_FACTOR = 10.0   # first_jump: rel_l2 above JUMP_FACTOR x the largest rel_l2 seen so far ...
JUMP_FLOOR = 1e-3    # ... and above this absolute floor (fp32 noise never counts as a jump)

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


# ----------------------------------------------------------------------------- metrics
def _metrics(x: np.ndarray, r: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64).ravel()
    r = np.asarray(r, np.float64).ravel()
    diff = x - r
    err2, ref2 = float(np.dot(diff, diff)), float(np.dot(r, r))
    x_norm, r_norm = float(np.linalg.norm(x)), np.sqrt(ref2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_l2 = 0.0 if err2 == 0 else (np.sqrt(err2) / r_norm if r_norm else np.inf)
        if x_norm == 0 and r_norm == 0:
            cosine = 1.0
        elif x_norm == 0 or r_norm == 0:
            cosine = 0.0
        else:
            cosine = float(np.clip(np.dot(x, r) / (x_norm * r_norm), -1.0, 1.0))
        sqnr = np.inf if err2 == 0 else float(10 * np.log10(ref2 / err2))
    return {"max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0, "rel_l2": float(rel_l2),
            "cosine": cosine, "sqnr_db": sqnr}


def _top1(x: np.ndarray, r: np.ndarray) -> float:
    if x.ndim != 2 or x.shape[0] == 0:
        return np.nan
    return float(np.mean(np.argmax(x, axis=-1) == np.argmax(r, axis=-1)))


def _accuracy(x: np.ndarray, labels: np.ndarray) -> float:
    if x.ndim != 2 or len(x) != len(labels):
        return np.nan
    return float(np.mean(np.argmax(x, axis=-1) == labels))


# ----------------------------------------------------------------------------- runners
def _engine_runner(engine: Engine) -> Runner:
    context = engine.create_context()
    return lambda feeds: context.run(feeds)


def _onnxruntime_runner(model: Any) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise WorkbenchError("comparing against an ONNX model needs onnxruntime (pip install onnxruntime); "
                             "or pass the model as wb.load(model) to compare against a fp32 CPU engine") from exc
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else os.fspath(model)
    try:
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise WorkbenchError(f"onnxruntime could not load the reference model: {type(exc).__name__}: {exc}") from exc
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in wanted})))
    return run


def _reference_runner(reference: Any) -> Runner:
    if isinstance(reference, Engine):
        return _engine_runner(reference)
    if isinstance(reference, Graph):
        return _engine_runner(build(reference, BuilderConfig(backend="cpu", precision="fp32", tactic_sources=["numpy"])))
    if isinstance(reference, (str, os.PathLike)) or hasattr(reference, "SerializeToString"):
        return _onnxruntime_runner(reference)
    raise WorkbenchError(f"reference must be an Engine, a wb.Graph, an onnx.ModelProto or a path to a .onnx "
                         f"file, got {type(reference).__name__}")


def _batches(data: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    batches = [data] if isinstance(data, Mapping) else list(data)
    if not batches or not all(isinstance(b, Mapping) for b in batches):
        raise WorkbenchError("data must be a feed dict (input name -> array) or a non-empty iterable of them")
    return batches


def _concat(chunks: list[np.ndarray]) -> np.ndarray:
    return chunks[0] if len(chunks) == 1 else np.concatenate([np.atleast_1d(c) for c in chunks])


# ----------------------------------------------------------------------------- public API
def compare(engine: Engine, reference: Any, data: Mapping[str, Any] | Iterable[Mapping[str, Any]], *,
            labels: Any = None, output: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Compare an engine's outputs with a reference's on the same data; one row per output.

    Args:
        engine: the engine under test.
        reference: another `Engine`; an `onnx.ModelProto` or .onnx path (run with onnxruntime on CPU);
            or a `wb.Graph` (built as an fp32 CPU engine).
        data: one feed dict or an iterable of feed dicts (batches); outputs are concatenated on axis 0.
        labels: class labels for the concatenated data (an array, or one array per batch); adds
            `accuracy` and `reference.accuracy` (argmax over the last axis, 2-D outputs only).
        output: restrict the comparison to this output name (or names); default all engine outputs.

    Returns:
        Columns `output`, `max_abs`, `rel_l2`, `cosine`, `sqnr_db`, `top1_agreement` (2-D outputs only,
        NaN otherwise) [, `accuracy`, `reference.accuracy`].

    Example:
        >>> compare(fp16_engine, fp32_engine, [{"input": x[i:i + 32]} for i in range(0, len(x), 32)], labels=y)
          output   max_abs    rel_l2    cosine  sqnr_db  top1_agreement  accuracy  reference.accuracy
        0 logits  0.0071   0.00031   1.0       70.1     1.0             0.975     0.975
    """
    names = [o.name for o in engine.outputs]
    if output is not None:
        wanted = [output] if isinstance(output, str) else list(output)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise WorkbenchError(f"output {unknown} is not an engine output; the engine has {names}")
        names = wanted
    run_ref = _reference_runner(reference)
    context = engine.create_context()
    got: dict[str, list] = {n: [] for n in names}
    want: dict[str, list] = {n: [] for n in names}
    for feeds in _batches(data):
        ours, theirs = context.run(feeds), run_ref(feeds)
        missing = [n for n in names if n not in theirs]
        if missing:
            raise WorkbenchError(f"the reference does not produce output(s) {missing}; it produces {sorted(theirs)}")
        for n in names:
            got[n].append(ours[n])
            want[n].append(theirs[n])

    if labels is not None:
        labels = (np.asarray(labels) if isinstance(labels, np.ndarray)
                  else np.concatenate([np.ravel(np.asarray(l)) for l in labels]))
    rows = []
    for n in names:
        x = np.asarray(_concat(got[n]), np.float64)
        r = np.asarray(_concat(want[n]), np.float64)
        if x.shape != r.shape:
            raise WorkbenchError(f"output {n!r}: engine shape {x.shape} differs from reference shape {r.shape}")
        row = {"output": n, **_metrics(x, r), "top1_agreement": _top1(x, r)}
        if labels is not None:
            row["accuracy"], row["reference.accuracy"] = _accuracy(x, labels), _accuracy(r, labels)
        rows.append(row)
    return pd.DataFrame(rows)


def compare_layers(engine: Engine, reference_engine: Engine | Graph, feeds: Mapping[str, Any]) -> pd.DataFrame:
    """Layer-wise comparison (Polygraphy style): every tensor both engines produce under the same name.

    Both engines run once on `feeds`, keeping all of their layers' outputs. One row per shared tensor,
    in the engine's execution order: `layer`, `op`, `tensor`, `precision`, `rel_l2`, `max_abs`, `cosine`,
    `first_jump`. `first_jump` is True on the first row whose rel_l2 exceeds JUMP_FACTOR (10) times the
    largest rel_l2 of the rows before it and JUMP_FLOOR (1e-3): where the error is born rather than
    inherited. Tensors of different dtypes (fp16 vs fp32) are compared in float64.

    Example:
        >>> df = compare_layers(fp16_engine, fp32_engine, {"input": x[:32]})
        >>> df.loc[df["first_jump"], ["layer", "rel_l2"]]
    """
    if isinstance(reference_engine, Graph):
        reference_engine = build(reference_engine, BuilderConfig(backend="cpu", precision="fp32", tactic_sources=["numpy"]))
    if not isinstance(reference_engine, Engine):
        raise WorkbenchError(f"reference_engine must be an Engine or a wb.Graph, got {type(reference_engine).__name__}")
    produced = {name for layer in reference_engine.layers for name in layer.outputs if name}
    order = [(layer, name) for layer in engine.layers for name in layer.outputs if name and name in produced]
    shared = {name for _, name in order}
    ours = engine.create_context().run(feeds, keep=shared)
    theirs = reference_engine.create_context().run(feeds, keep=shared)

    rows = []
    for layer, name in order:
        x, r = ours.get(name), theirs.get(name)
        if x is None or r is None or x.shape != r.shape:
            log.warning("tensor %r: not comparable (shapes %s vs %s)", name, getattr(x, "shape", None),
                        getattr(r, "shape", None))
            stats = {"max_abs": np.nan, "rel_l2": np.nan, "cosine": np.nan}
        else:
            stats = _metrics(x, r)
        rows.append({"layer": layer.name, "op": layer.qualified_op, "tensor": name, "precision": layer.precision,
                     "rel_l2": stats["rel_l2"], "max_abs": stats["max_abs"], "cosine": stats["cosine"]})
    df = pd.DataFrame(rows, columns=["layer", "op", "tensor", "precision", "rel_l2", "max_abs", "cosine"])
    rel = df["rel_l2"].astype(float).fillna(0.0)
    previous_max = rel.cummax().shift(1, fill_value=0.0)
    jump = (rel > JUMP_FACTOR * previous_max) & (rel > JUMP_FLOOR)
    df["first_jump"] = jump & (jump.cumsum() == 1)
    return df


def plot_layer_errors(df: pd.DataFrame, *, floor: float = 1e-12) -> Figure:
    """rel_l2 per layer (log scale) from a `compare_layers` DataFrame, the first jump marked in red.

    Exact zeros are drawn at `floor` so they stay on the log axis.
    """
    fig = Figure(figsize=(max(6.0, 0.35 * len(df) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(df))
    values = np.maximum(df["rel_l2"].to_numpy(dtype=float), floor)
    ax.plot(positions, values, marker="o", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(positions, [f"{l} ({t})" if l != t else str(l) for l, t in zip(df["layer"], df["tensor"])],
                  rotation=90, fontsize=8)
    ax.set_ylabel(f"rel_l2 (zeros drawn at {floor:g})")
    ax.set_title("layer-wise error vs reference")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    jumps = positions[df["first_jump"].to_numpy(dtype=bool)] if "first_jump" in df else []
    for pos in jumps:
        ax.axvline(pos, color="tab:red", linestyle="--", linewidth=1)
        ax.plot([pos], [values[pos]], marker="o", color="tab:red", label=f"first jump: {df['layer'].iloc[pos]}")
    if len(jumps):
        ax.legend(loc="best", fontsize=8)
    return fig
