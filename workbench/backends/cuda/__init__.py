"""The CUDA backend: CuPy launchers for our NVRTC-compiled kernels (../../kernels), cuBLAS through
CuPy, and the optional tactic sources cuDNN (Python frontend) and cuBLASLt (nvmath-python).
Every tactic is checked against the CPU backend (the oracle) by the autotuner and the gpu tests."""
from __future__ import annotations

from typing import Sequence

from workbench.backends.base import QUANTIZED_GRIDS, Layer
from workbench.backends.cuda.device import cuda_available, cupy, device_info
from workbench.backends.cuda.tactic import CudaTactic

__all__ = ["CudaBackend", "cuda_available"]


class CudaBackend:
    name = "cuda"
    preferred_layout = "NHWC"
    writes_into_outputs = True           # tactics fill preallocated arena slices (see tactic.py)
    timing_repeats = {1: (1, 3), 2: (3, 10), 3: (5, 30)}   # level -> (warm-ups, timed runs)

    def __init__(self, sources: Sequence[str] | None = None):
        cupy()                                  # a clear BuildError here when there is no GPU
        from workbench.backends.cuda import tactics as _tactics  # noqa: F401  (registers them)
        from workbench.backends.cuda.registry import TACTICS, available_sources
        self.sources = available_sources() if sources is None else list(sources)
        self._tactics = [t for t in TACTICS if t.source in self.sources]
        self.version = f"cuda-backend-1/cupy-{device_info()['cupy']}/cudart-{device_info()['cuda_runtime']}"

    @property
    def device(self) -> str:
        info = device_info()
        return f"{info['name']} (sm_{info['compute_capability'].replace('.', '')})"

    def supports(self, layer: Layer) -> bool:
        return bool(self.tactics(layer))

    # the order candidates are listed in, which is also builder_level 0's choice: the fused
    # library plans first, then cuBLAS, our kernels, CuPy's, and the host last
    _PREFERENCE = {"cusparselt": 0, "cudnn": 0, "nvmath": 1, "cublas": 2, "kernels": 3, "cupy": 4, "fallback": 5}

    def tactics(self, layer: Layer) -> list[CudaTactic]:
        """Every tactic that can run `layer`, best guess first; the host fallback only when nothing else can."""
        found = [t for t in self._tactics if t.supports(layer, layer.precision)]
        if any(t.source != "fallback" for t in found):     # the host runs only what the GPU cannot
            found = [t for t in found if t.source != "fallback"]
        return sorted(found, key=lambda t: self._PREFERENCE.get(t.source, 9))

    def tactic(self, name: str, layer: Layer) -> CudaTactic:
        for t in self._tactics:
            if t.name == name:
                return t
        raise KeyError(f"CUDA backend has no tactic {name!r} (layer {layer.name!r}); "
                       f"sources in use: {self.sources}")

    def upload(self, array):
        return cupy().asarray(array)

    def download(self, array):
        return cupy().asnumpy(array)

    def empty(self, shape, dtype):
        return cupy().empty(shape, dtype)

    def random(self, shape, dtype, seed: int):
        """Nonzero test data made on the GPU (host generation of a batch-256 activation takes seconds)."""
        cp = cupy()
        state = cp.random.RandomState(seed)
        dtype = cp.dtype(dtype)
        if dtype.kind == "f":
            return (state.standard_normal(shape, dtype=cp.float32) * 0.5 + 0.1).astype(dtype)
        if dtype.name in QUANTIZED_GRIDS:
            return state.randint(*QUANTIZED_GRIDS[dtype.name], size=shape).astype(dtype)
        return state.randint(0, 2, size=shape).astype(dtype)

    def stream(self):
        """A new non-blocking stream; the autotuner and contexts run tactics inside `with stream:`."""
        return cupy().cuda.Stream(non_blocking=True)

    def synchronize(self) -> None:
        cupy().cuda.Device().synchronize()

    def measure(self, run, stream, warmups: int, repeats: int, inner: int = 10) -> float:
        """Median milliseconds of one `run()`, timed as the engine will run it: `inner` calls
        captured into a CUDA graph and replayed between events, so the host's Python cost per call
        (tens of microseconds) does not hide a kernel of a few. A tactic that cannot be captured is
        timed as `inner` back-to-back eager calls instead."""
        cp = cupy()
        with stream:
            for _ in range(max(warmups, 1)):
                run()
            stream.synchronize()
            replay = self._captured(run, stream, inner)
            samples = []
            for _ in range(repeats):
                start, stop = cp.cuda.Event(), cp.cuda.Event()
                start.record(stream)
                if replay is not None:
                    replay.launch(stream)
                else:
                    for _ in range(inner):
                        run()
                stop.record(stream)
                stop.synchronize()
                samples.append(cp.cuda.get_elapsed_time(start, stop) / inner)
        samples.sort()
        return samples[len(samples) // 2]

    @staticmethod
    def _captured(run, stream, inner: int):
        try:
            stream.begin_capture()
        except Exception:
            return None
        try:
            for _ in range(inner):
                run()
        except Exception:
            try:
                stream.end_capture()
            except Exception:
                pass
            return None
        try:
            graph = stream.end_capture()
            graph.upload(stream)
            return graph
        except Exception:
            return None

    def allocate(self, nbytes: int):
        return cupy().empty(nbytes, dtype=cupy().uint8)

    def timer(self) -> "EventTimer":
        return EventTimer()


class EventTimer:
    """Times GPU work on the current stream with CUDA events."""

    def __enter__(self) -> "EventTimer":
        cp = cupy()
        self._start, self._stop = cp.cuda.Event(), cp.cuda.Event()
        self._start.record()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.record()
        self._stop.synchronize()

    @property
    def elapsed_ms(self) -> float:
        return cupy().cuda.get_elapsed_time(self._start, self._stop)
