"""`BuilderConfig`: every choice the builder needs, validated up front so a bad setting fails
before any work is done, with the setting named."""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Sequence

from workbench.errors import BuildError

__all__ = ["BuilderConfig", "Profile", "PRECISIONS"]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")   # what each one means: workbench/builder/precision.py


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
            a calibration cache or a model with Q/DQ nodes).
        batch_size: fixes a symbolic batch dimension (a profile of min = opt = max).
        profile: (min, opt, max) batch sizes instead of one fixed batch size.
        input_shapes: full shapes for inputs with other symbolic dimensions (e.g. sequence length).
        calibration_data: for int8, an iterable of feed dicts (~500 representative samples).
        calibrator: for int8, "entropy" (KL divergence, as TensorRT), "minmax" or "percentile".
        calibration_cache: for int8, a JSON calibration table read if it matches the model, else written.

    Example:
        >>> wb.BuilderConfig(backend="cpu", precision="fp32", batch_size=8)
        >>> wb.BuilderConfig(profile=(1, 8, 32))
    """
    backend: str = "cpu"
    precision: str = "fp32"
    batch_size: int | None = None
    profile: Profile | Sequence[int] | None = None
    input_shapes: dict[str, Sequence[int]] | None = None
    calibration_data: Iterable[dict] | None = None
    calibrator: str = "entropy"
    calibration_cache: str | os.PathLike | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise BuildError(f"precision {self.precision!r} is not supported; choose one of {', '.join(PRECISIONS)}")
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
