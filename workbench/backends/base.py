"""The three protocols every backend speaks: Backend, Tactic and the Layer they run.

A `Layer` is one node of the (optimized) graph bound for execution. A `Tactic` is one way to
run one layer ("numpy", "im2col_gemm", "cublas_gemm"...). A `Backend` lists the tactics that can
run a layer, allocates buffers and times things. The builder's autotuner is a loop over
`backend.tactics(layer)`; the runtime calls `prepare` once per context and `run` per inference.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Protocol, Sequence

__all__ = ["Layer", "Tactic", "Backend", "Timer", "PerfCounterTimer", "QUANTIZED_GRIDS"]

# The 8-bit integer types hold quantized activations, not indices or masks: any value on their grid
# is representative data. [low, high) of the random data the autotuners time them on (int8's grid is
# symmetric, as the calibrators' scales make it).
QUANTIZED_GRIDS = {"int8": (-127, 128), "uint8": (0, 256)}


@dataclasses.dataclass
class Layer:
    """A node of the optimized graph, bound for execution.

    `inputs`/`outputs` are tensor names ("" marks an omitted optional input or output).
    `source_nodes` keeps the names of the original ONNX nodes this layer came from, so every
    engine layer stays traceable to the model the user gave us.
    """
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    domain: str = ""
    opset: int = 0                      # version of `domain` the model imports
    precision: str = "fp32"
    tactic: str = ""
    source_nodes: list[str] = dataclasses.field(default_factory=list)
    output_shapes: list[tuple | None] = dataclasses.field(default_factory=list)
    # "" = ONNX's own layouts; "NHWC" = every 4-D activation this layer reads or writes is stored
    # channels-last (weights keep their ONNX layout; tactics re-lay them out in `prepare`)
    layout: str = ""
    output_dtypes: list[str] = dataclasses.field(default_factory=list)   # numpy dtype names, "" if unknown
    # the weight operand (input 1) is 2:4 structured and BuilderConfig.sparsity lets sparse tactics compete
    sparse: bool = False

    @property
    def qualified_op(self) -> str:
        return self.op if self.domain in ("", "ai.onnx") else f"{self.domain}::{self.op}"


class Tactic(Protocol):
    name: str

    def supports(self, layer: Layer, precision: str) -> bool: ...

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> Any:
        """Build-time work (weight layout, quantization); returns the state `run` needs."""

    def run(self, state: Any, inputs: Sequence[Any], outputs: Sequence[Any] | None, stream: Any) -> list[Any]:
        """Compute the layer. `outputs` are preallocated destinations where the backend plans
        memory (None otherwise); the returned list holds the output arrays, in order."""


class Timer(Protocol):
    def __enter__(self) -> "Timer": ...
    def __exit__(self, *exc) -> None: ...
    @property
    def elapsed_ms(self) -> float: ...


class Backend(Protocol):
    name: str
    preferred_layout: str                        # "" or "NHWC": how the builder lays out 4-D activations
    writes_into_outputs: bool                    # tactics fill preallocated outputs (else they return them)
    timing_repeats: dict[int, tuple[int, int]]   # builder_level -> (warm-ups, timed runs)

    def tactics(self, layer: Layer) -> list[Tactic]: ...
    def tactic(self, name: str, layer: Layer) -> Tactic: ...
    def supports(self, layer: Layer) -> bool: ...
    def allocate(self, nbytes: int) -> Any: ...
    def timer(self) -> Timer: ...
    # moving data between numpy and the backend's arrays (identity on the CPU)
    def upload(self, array: Any) -> Any: ...
    def download(self, array: Any) -> Any: ...
    def empty(self, shape: tuple, dtype: Any) -> Any: ...
    def stream(self) -> Any: ...
    def synchronize(self) -> None: ...
    def random(self, shape: tuple, dtype: Any, seed: int) -> Any: ...
    def measure(self, run, stream: Any, warmups: int, repeats: int) -> float:
        """Median milliseconds of one `run()` (the autotuner's clock)."""


class PerfCounterTimer:
    """Wall-clock timer for host backends (GPU backends time with events instead)."""

    def __enter__(self) -> "PerfCounterTimer":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._elapsed = time.perf_counter() - self._t0

    @property
    def elapsed_ms(self) -> float:
        return self._elapsed * 1e3
