"""`BuilderConfig`: every choice the builder needs, validated up front so a bad setting fails
before any work is done, with the setting named."""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Iterable, Mapping, Sequence

from workbench.errors import BuildError

__all__ = ["BuilderConfig", "Profile", "PRECISIONS", "SPARSITY_MODES"]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")   # what each one means: workbench/builder/precision.py
SPARSITY_MODES = ("disable", "enable", "force")         # workbench/quant/sparsity_mode.py


@dataclasses.dataclass(frozen=True)
class Profile:
    """Optimization profile for the batch dimension: the engine accepts any batch in [min, max]
    and is tuned (and shape-inferred) at `opt`."""
    min: int
    opt: int
    max: int

    def __post_init__(self):
        if not (1 <= self.min <= self.opt <= self.max):
            raise BuildError(f"profile must satisfy 1 <= min <= opt <= max, got "
                             f"min={self.min}, opt={self.opt}, max={self.max}")

    def accepts(self, batch: int) -> bool:
        return self.min <= batch <= self.max


@dataclasses.dataclass
class BuilderConfig:
    """How to build an engine.

    Args:
        backend: "cpu" (numpy; runs anywhere) or "cuda".
        precision: "fp32", "tf32" (float32 storage, matmul operands rounded to TF32), "fp16" or
            "bf16" (low-precision layers, float32 engine inputs and outputs), or "int8" (Conv/Gemm/MatMul
            on int8 with per-tensor activation and per-channel weight scales; needs calibration data,
            a calibration cache or a model with Q/DQ nodes). Or an allowed set such as {"fp16", "int8"}
            (fp32 is always allowed, as TensorRT's flags): each layer gets the fastest allowed precision
            it supports (workbench/builder/precision_policy.py); the engine's meta["precision"] says why.
        strict: with an allowed set, no timing: each layer gets the lowest allowed precision it supports
            (int8, then fp16, bf16, tf32, fp32).
        layer_precisions: per-layer overrides {selector: precision}; a selector is a layer (or original
            node) name, "re:<regex>" searched in layer and node names, or "op:<op type>". An exact name
            beats a regex, a regex beats an op type; a selector that matches no layer is an error.
        sparsity: "disable"; "enable" marks layers whose weights already are 2:4 as sparse-eligible
            (meta["sparse_layers"]); "force" prunes to 2:4 first and reports what it skipped.
        batch_size: fixes a symbolic batch dimension (a profile of min = opt = max).
        profile: (min, opt, max) batch sizes instead of one fixed batch size.
        input_shapes: full shapes for inputs with other symbolic dimensions (e.g. sequence length).
        calibration_data: for int8, an iterable of feed dicts (~500 representative samples).
        calibrator: for int8, "entropy" (KL divergence, as TensorRT), "minmax" or "percentile".
        calibration_cache: for int8, a JSON calibration table read if it matches the model, else written.
        tactic_sources: which tactic sources may compete (None = every source the backend has;
            `wb.backends.tactic_sources("cuda")` lists them, e.g. "cublas", "kernels", "cudnn", "nvmath").
        timing_cache: a JSON TimingCache file; read before tuning and written after, so a warm
            rebuild times nothing.
        max_workspace_bytes: the most scratch memory one tactic may use (None = no limit).
        builder_level: 0 = first valid tactic, no timing; 1 = time each candidate briefly; 2 = time
            each candidate (median of 10 after warm-up); 3 = exhaustive (more iterations).
        max_streams: CUDA streams independent branches may run on (1 = one stream, in order;
            e.g. 4 lets an inception block's four branches overlap; the memory plan keeps their
            tensors apart). Ignored by the CPU backend.
        int8_fusion: run each quantized convolution (DequantizeLinear -> Conv -> QuantizeLinear) as one
            integer layer, FusedQConv: int8 in, exact int32 accumulation, requantizing epilogue, int8
            out (as TensorRT does); False runs the Q/DQ graph as written, in float (the reference
            the fused numbers are compared with).
        progress: called as progress(done, total, layer_name) while layers are tuned; it may raise
            to cancel the build (the app's Cancel button does). None shows a tqdm bar on long builds.

    Example:
        >>> wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=8)
        >>> wb.BuilderConfig(profile=(1, 8, 32))
    """
    backend: str = "cpu"
    precision: str | frozenset[str] = "fp32"
    batch_size: int | None = None
    profile: Profile | Sequence[int] | None = None
    input_shapes: dict[str, Sequence[int]] | None = None
    calibration_data: Iterable[dict] | None = None
    calibrator: str = "entropy"
    calibration_cache: str | os.PathLike | None = None
    tactic_sources: Sequence[str] | None = None
    timing_cache: str | os.PathLike | None = None
    max_workspace_bytes: int | None = None
    builder_level: int = 2
    max_streams: int = 1
    int8_fusion: bool = True
    progress: Callable[[int, int, str], None] | None = None
    strict: bool = False
    layer_precisions: Mapping[str, str] | None = None
    sparsity: str = "disable"

    def __post_init__(self):
        self.precision = _check_precision(self.precision)
        if self.layer_precisions is not None:
            self.layer_precisions = _check_overrides(self.layer_precisions)
        if self.sparsity not in SPARSITY_MODES:
            raise BuildError(f"sparsity {self.sparsity!r} is not supported; choose one of {', '.join(SPARSITY_MODES)}")
        if self.builder_level not in (0, 1, 2, 3):
            raise BuildError(f"builder_level must be 0, 1, 2 or 3, got {self.builder_level!r}")
        if not isinstance(self.max_streams, int) or not 1 <= self.max_streams <= 16:
            raise BuildError(f"max_streams must be an int from 1 to 16, got {self.max_streams!r}")
        if self.max_workspace_bytes is not None and self.max_workspace_bytes < 0:
            raise BuildError(f"max_workspace_bytes must be >= 0, got {self.max_workspace_bytes}")
        if self.tactic_sources is not None:
            if isinstance(self.tactic_sources, str):
                raise BuildError(f"tactic_sources must be a list of names, got the string {self.tactic_sources!r}")
            self.tactic_sources = tuple(self.tactic_sources)
        if self.batch_size is not None and self.profile is not None:
            raise BuildError("give either batch_size or profile, not both")
        if self.batch_size is not None:
            if not isinstance(self.batch_size, int) or self.batch_size < 1:
                raise BuildError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.profile is not None and not isinstance(self.profile, Profile):
            values = tuple(self.profile)
            if len(values) != 3:
                raise BuildError(f"profile must be (min, opt, max), got {values!r}")
            self.profile = Profile(*values)

    @property
    def batch_profile(self) -> Profile | None:
        if self.profile is not None:
            return self.profile
        if self.batch_size is not None:
            return Profile(self.batch_size, self.batch_size, self.batch_size)
        return None


def _check_precision(precision) -> str | frozenset[str]:
    """A name stays a name; any other iterable of names becomes a frozenset (an allowed set)."""
    if isinstance(precision, str):
        if precision not in PRECISIONS:
            raise BuildError(f"precision {precision!r} is not supported; choose one of {', '.join(PRECISIONS)}")
        return precision
    try:
        names = frozenset(precision)
    except TypeError:
        raise BuildError(f"precision must be a name or a set of names from {', '.join(PRECISIONS)}, "
                         f"got {precision!r}") from None
    if not names:
        raise BuildError(f"precision set is empty; give names from {', '.join(PRECISIONS)}")
    unknown = sorted(str(n) for n in names if n not in PRECISIONS)
    if unknown:
        raise BuildError(f"precision set names {unknown}, which are not precisions; choose from {', '.join(PRECISIONS)}")
    return names


def _check_overrides(overrides) -> dict[str, str]:
    if not isinstance(overrides, Mapping):
        raise BuildError(f"layer_precisions must be a dict {{selector: precision}}, got {type(overrides).__name__}")
    for selector, precision in overrides.items():
        if not isinstance(selector, str) or selector in ("", "re:", "op:"):
            raise BuildError(f"layer_precisions: selector {selector!r} must be a layer name, 're:<regex>' or 'op:<op>'")
        if precision not in PRECISIONS:
            raise BuildError(f"layer_precisions[{selector!r}] = {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if selector.startswith("re:"):
            try:
                re.compile(selector[3:])
            except re.error as exc:
                raise BuildError(f"layer_precisions: selector {selector!r} is not a valid regex: {exc}") from None
    return dict(overrides)
