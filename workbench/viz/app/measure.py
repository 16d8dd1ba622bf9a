"""What the app measures right after a build: latency per batch size, the per-layer profile, and
the comparison with the FP32 reference. Each step reports progress, can be cancelled, and a
step that cannot run here leaves a note ("why not") instead of failing the build.
"""
from __future__ import annotations

import logging
from typing import Callable

import pandas as pd

import workbench as wb
from workbench.builder import Profile
from workbench.evaluate.metrics import latency
from workbench.runtime import Engine
from workbench.viz.app.data import ModelData

__all__ = ["batch_points", "engine_batch_range", "measure_engine", "Measurements"]
log = logging.getLogger(__name__)


def engine_batch_range(engine: Engine) -> Profile:
    """The batches the engine accepts: its profile, or the fixed batch of its first input."""
    if engine.profile is not None:
        return engine.profile
    shape = engine.inputs[0].shape or (1,)
    batch = shape[0] if shape and isinstance(shape[0], int) else 1
    return Profile(batch, batch, batch)


def batch_points(profile: Profile, limit: int = 6) -> list[int]:
    """min, opt, max and the powers of two between them, at most `limit` points."""
    points = {profile.min, profile.opt, profile.max}
    power = 1
    while power < profile.max:
        if power > profile.min:
            points.add(power)
        power *= 2
    ordered = sorted(points)
    if len(ordered) > limit:                 # keep the ends and opt, thin out the rest evenly
        keep = {ordered[0], ordered[-1], profile.opt}
        step = (len(ordered) - 1) / (limit - 1)
        keep |= {ordered[round(i * step)] for i in range(limit)}
        ordered = sorted(keep)
    return ordered


class Measurements:
    """Results of `measure_engine`; `notes` says what was left out and why."""

    def __init__(self) -> None:
        self.latency = pd.DataFrame(columns=["batch", "latency.median_ms", "latency.p90_ms", "throughput.per_s"])
        self.profile: pd.DataFrame | None = None
        self.comparison: pd.DataFrame | None = None
        self.notes: list[str] = []


def measure_engine(engine: Engine, data: ModelData | None, reference: Callable[..., Engine] | None,
                   phase: Callable[[str], None], iters: int = 10) -> Measurements:
    """Time the engine at its batch points, profile its layers at the profile's opt batch, and compare
    it with the FP32 reference on the evaluation data (with accuracy when there are labels).

    Args:
        data: the model's inputs; None when none can be made (the note says why).
        reference: reference(profile, progress) makes the FP32 reference engine for a batch range (the
            app caches them).
        phase: called with a short text before each step; raises to cancel.
    """
    out = Measurements()
    if data is None:
        out.notes.append("no input data for this model: latency, profile and accuracy were not measured")
        return out
    accepted = engine_batch_range(engine)
    context = engine.create_context()
    rows = []
    for batch in batch_points(accepted):
        phase(f"timing batch {batch}")
        feeds = data.feeds(batch)
        stats = latency(lambda: context.run(feeds), warmup=2, iters=iters)
        rows.append({"batch": batch, **stats, "throughput.per_s": batch * 1e3 / stats["latency.median_ms"]})
    out.latency = pd.DataFrame(rows)

    # the engine runs (timed above); a profile or a comparison that fails is a note, not a failed build
    phase(f"profiling layers at batch {accepted.opt}")
    profile = getattr(context, "profile", None)
    if profile is None:
        out.notes.append("per-layer times need ExecutionContext.profile, which this version does not have")
    else:
        try:
            out.profile = profile(data.feeds(accepted.opt), iters=iters)
        except Exception as exc:
            out.notes.append(f"the per-layer profile failed: {type(exc).__name__}: {exc}")

    if reference is not None:
        phase("comparing with the FP32 reference")
        chunks, labels = data.chunks(accepted.max, accepted.min)
        try:
            def progress(done: int, total: int, layer: str) -> None:
                phase(f"building the FP32 reference: {done}/{total} {layer}")
            out.comparison = wb.compare(engine, reference(accepted, progress), chunks, labels=labels)
        except Exception as exc:
            out.notes.append(f"the comparison with the FP32 reference failed: {type(exc).__name__}: {exc}")
        if out.comparison is not None and labels is not None and len(labels) != len(data.images):
            out.notes.append(f"accuracy on {len(labels)} of {len(data.images)} images: the rest do not make a "
                             f"batch the profile [{accepted.min}, {accepted.max}] accepts")
    if data.labels is None:
        out.notes.append(f"{data.description}: no accuracy, only agreement with the FP32 reference")
    return out

