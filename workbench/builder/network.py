"""`Network`: what the builder hands the runtime. Pure data (layers, weights, I/O specs, profile),
so it can be serialized to a plan file and rebuilt into an Engine without the builder."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from workbench.backends.base import Layer
from workbench.builder.config import Profile

__all__ = ["IOSpec", "Network"]


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """An engine input or output. `shape` holds ints for fixed dims and None for dims that may vary;
    `batch_axis` is the dim governed by the profile (None when the engine has no profile)."""
    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None
    batch_axis: int | None = None

    def describe(self) -> str:
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.name}[{dims}]"


@dataclasses.dataclass
class Network:
    layers: list[Layer]
    weights: dict[str, np.ndarray]
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    backend: str
    precision: str
    profile: Profile | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
