"""Reductions on the GPU: ReduceSum/Mean/Max/Min (CuPy ReductionKernels with fp32 accumulation
for float inputs, int64 for integer ones, writing straight into the output) and ArgMax/ArgMin
(one thread per output position walking the reduced axis).

Axes come from the attribute or a constant input, by opset, as the oracle reads them; in an
NHWC layer a 4-D input's NCHW axes are remapped to its channels-last storage (a [N, C, 1, 1]
keepdims result is then stored [N, 1, 1, C], as the layout asks).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import ints_of, nhwc_axis, present_outputs

__all__: list[str] = []

_PREAMBLE = r"""
template <typename A> __device__ __forceinline__ A wb_rmax(A a, A b) { return (a != a || a > b) ? a : b; }
template <typename A> __device__ __forceinline__ A wb_rmin(A a, A b) { return (a != a || a < b) ? a : b; }
"""
# op -> (reduce expression, post expression, float identity, int identity)
_FORMS = {
    "ReduceSum": ("a + b", "y = (Y)a", "0", "0"),
    "ReduceMean": ("a + b", "y = (Y)(a / (_in_ind.size() / _out_ind.size()))", "0", None),
    "ReduceMax": ("wb_rmax(a, b)", "y = (Y)a", "__int_as_float(0xff800000)", "(-9223372036854775807LL - 1)"),
    "ReduceMin": ("wb_rmin(a, b)", "y = (Y)a", "__int_as_float(0x7f800000)", "9223372036854775807LL"),
}
_KERNELS: dict[tuple[str, str], Any] = {}


def _reduction(op: str, kind: str):
    key = (op, kind)
    if key not in _KERNELS:
        reduce_expr, post, f_identity, i_identity = _FORMS[op]
        ctype = "float" if kind == "f" else "long long"
        if kind == "f" and op == "ReduceMean":
            post = "y = (Y)(a / (float)(_in_ind.size() / _out_ind.size()))"
        _KERNELS[key] = cupy().ReductionKernel(
            "T x", "Y y", f"({ctype})x", reduce_expr, post, f_identity if kind == "f" else i_identity,
            f"wb_{op.lower()}_{kind}", reduce_type=ctype, preamble=_PREAMBLE)
    return _KERNELS[key]


def _axes_input(layer: Layer) -> bool:
    return layer.opset >= (13 if layer.op == "ReduceSum" else 18)


@dataclasses.dataclass
class _State:
    layer: Layer
    axes: list[int] | None


class Reduce(CudaTactic):
    name = "cupy.reduce"
    source = "cupy"

    def supports(self, layer: Layer, precision: str) -> bool:
        return layer.op in _FORMS and layer.domain in ("", "ai.onnx")

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        axes = ints_of(layer, weights, 1, "axes") if _axes_input(layer) else layer.attrs.get("axes")
        return _State(layer, None if not axes else [int(a) for a in axes])

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, x = state.layer, inputs[0]
        out = present_outputs(layer, outputs)[0][1]
        if state.axes is None and layer.attrs.get("noop_with_empty_axes", 0):
            cupy().copyto(out, x)
            return outputs
        rank = max(x.ndim, 1)
        axes = range(x.ndim) if state.axes is None else state.axes
        axes = tuple(sorted({nhwc_axis(int(a) % rank, x.ndim, layer.layout) for a in axes}))
        kind = "f" if x.dtype.kind == "f" else "i"
        if kind == "i" and layer.op == "ReduceMean":
            raise ValueError(f"layer {layer.name!r}: ReduceMean of {x.dtype.name} is left to the fallback")
        _reduction(layer.op, kind)(x, out, axis=axes, keepdims=bool(layer.attrs.get("keepdims", 1)))
        return outputs


_ARG = None


def _arg_kernel():
    """y[o, j] = index along the middle axis of x[o, :, j] of the first (or last) max (or min);
    NaN counts as the extreme, as numpy's argmax."""
    global _ARG
    if _ARG is None:
        _ARG = cupy().ElementwiseKernel(
            "raw T x, int64 n, int64 inner, int32 is_max, int32 last", "int64 y",
            """
            long long o = i / inner, j = i % inner;
            const T* p = &x[0] + o * n * inner + j;
            float best = (float)p[0];
            long long at = 0;
            for (long long k = 1; k < n; ++k) {
                float v = (float)p[k * inner];
                if (best != best) break;
                bool better = v != v || (is_max ? (last ? v >= best : v > best) : (last ? v <= best : v < best));
                if (better) { best = v; at = k; }
            }
            y = at;
            """, "wb_arg_extreme")
    return _ARG


class ArgExtreme(CudaTactic):
    name = "cupy.arg_extreme"
    source = "cupy"

    def supports(self, layer: Layer, precision: str) -> bool:
        return layer.op in ("ArgMax", "ArgMin") and layer.domain in ("", "ai.onnx")

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> Layer:
        return layer

    def run(self, layer: Layer, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, out = inputs[0], present_outputs(layer, outputs)[0][1]
        if not (x.flags.c_contiguous and out.flags.c_contiguous) or x.dtype.kind != "f":
            raise ValueError(f"layer {layer.name!r} ({layer.op}): needs a contiguous float input, got "
                             f"{x.dtype.name}{tuple(x.shape)}")
        axis = nhwc_axis(int(layer.attrs.get("axis", 0)) % max(x.ndim, 1), x.ndim, layer.layout)
        inner = math.prod(x.shape[axis + 1:])
        _arg_kernel()(x, np.int64(x.shape[axis]), np.int64(inner), np.int32(layer.op == "ArgMax"),
                      np.int32(bool(layer.attrs.get("select_last_index", 0))), out.reshape(-1))
        return outputs


register(Reduce())
register(ArgExtreme())
