"""What every CUDA tactic shares: the contract, the tactic sources, and small helpers.

Contract (the runtime and the autotuner rely on it):
- `supports(layer, precision)` is cheap and pure: op, attrs, layout, dtypes (from weights or
  `layer.precision`), never the GPU.
- `prepare(layer, weights)` runs once per execution context: uploads and re-lays out weights (OIHW
  -> what the kernel wants), compiles kernels; `weights` maps names to numpy arrays.
- `run(state, inputs, outputs, stream)` enqueues work on `stream` (already current) and returns
  `outputs`. `inputs` are CuPy arrays (None for an omitted optional input); `outputs` are
  preallocated, C-contiguous CuPy arrays of the layer's output shapes and dtypes, which the tactic
  must fill. Nothing may allocate device memory or synchronize in `run`: it is captured into a
  CUDA graph. Scratch memory is allocated in `prepare` (per context); `workspace_bytes(layer)`
  says how much, so the builder can respect `max_workspace_bytes`. A tactic that must know the
  input shapes to plan (cuDNN) plans lazily on its first `run`, which is a warm-up outside capture.
- A tactic that only reinterprets its input (Reshape, Flatten, a Reformat of a 1x1 image) sets
  `is_view = True`: the runtime then gives it no output buffer, calls `view(state, inputs)` and
  uses the returned array, which must alias the input.

Layout: when `layer.layout == "NHWC"`, every 4-D activation input and output is channels-last
([N, H, W, C]); weights keep their ONNX layout. Precision: an fp16 layer reads and writes
float16 activations, its float weights are already float16 (the builder converted them).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer

__all__ = ["CudaTactic", "SOURCES", "DTYPES", "activation_dtype", "is_float"]

# Every tactic source of the CUDA backend; BuilderConfig(tactic_sources=...) picks among these.
SOURCES = ("cublas", "kernels", "cupy", "cudnn", "nvmath", "cusparselt", "fallback")

DTYPES = {"fp32": np.float32, "tf32": np.float32, "fp16": np.float16}


def activation_dtype(layer: Layer) -> np.dtype | None:
    """The float dtype of this layer's activations, or None if the GPU has no native path for it."""
    dtype = DTYPES.get(layer.precision)
    return np.dtype(dtype) if dtype is not None else None


def is_float(array_or_dtype: Any) -> bool:
    return np.dtype(getattr(array_or_dtype, "dtype", array_or_dtype)).kind == "f"


class CudaTactic:
    """Base class: a name ("<source>.<what>"), the source it belongs to, and default behaviour."""
    name: str = ""
    source: str = "kernels"
    is_view: bool = False

    def supports(self, layer: Layer, precision: str) -> bool:
        raise NotImplementedError

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> Any:
        return None

    def run(self, state: Any, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        raise NotImplementedError

    def view(self, state: Any, inputs: Sequence[Any], output_shapes: Sequence[tuple]) -> list[Any]:
        raise NotImplementedError

    def workspace_bytes(self, layer: Layer) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
