"""workbench::FusedAttention on the GPU: Y = softmax(scale * Q @ K^T + M) @ V.

`cublas.attention` is the plain, correct path: two strided-batched cuBLAS GEMMs (fp32
accumulation; fp32 scores even for fp16 inputs; called through tactics/_cublas.py so a CUDA
graph can capture them) around the row softmax of kernels/norm.cu, which
applies the scale and the broadcast additive mask on the fly. Scores and probabilities live in a
workspace allocated outside `run` (sized from the layer's output shape, assuming a square
self-attention; a larger first run grows it during the warm-up, before any capture).

Layouts, row-major: Q [.., Sq, D], K [.., Sk, D] (or [.., D, Sk] with k_transposed=1),
V [.., Sk, Dv], Y [.., Sq, Dv]; at most two batch dims (BERT: [B, H]); the mask broadcasts to
[.., Sq, Sk] through its strides (0 along broadcast dims), e.g. [B, 1, 1, Sk].

`kernels.flash_attention` (kernels/attention.cu) is the fused fp16 path for head dims 32, 64 and
128 (D == Dv): one kernel, no scores in memory, online softmax in fp32 (BERT-base's 12 heads x 128
tokens x 64 dims is what it is tuned for).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics._args import present_outputs, resolve_inputs, upload_weights
from workbench.backends.cuda.tactics._cublas import CublasHandle
from workbench.backends.cuda.tactics.norm import launch_softmax_rows

__all__ = ["attention_geometry", "mask_strides"]
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Geometry:
    batch: tuple        # batch dims of Q (at most 2)
    sq: int
    sk: int
    d: int
    dv: int


def attention_geometry(layer: Layer, q, k, v) -> Geometry:
    """Shapes of one call, checked; errors name the layer and the mismatching input."""
    def fail(why):
        raise ValueError(f"layer {layer.name!r} (FusedAttention): {why}; Q {tuple(q.shape)}, K {tuple(k.shape)}, "
                         f"V {tuple(v.shape)}, k_transposed={int(layer.attrs.get('k_transposed', 0))}")
    if not (q.ndim == k.ndim == v.ndim) or q.ndim < 2 or q.ndim > 4:
        fail("Q, K and V need the same rank, 2 to 4")
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        fail("Q, K and V need the same batch dims (no broadcasting)")
    sq, d = q.shape[-2:]
    dk, sk = k.shape[-2:] if layer.attrs.get("k_transposed", 0) else k.shape[-2:][::-1]
    if dk != d or v.shape[-2] != sk:
        fail("inner dims disagree")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype.name not in ("float32", "float16"):
        fail("Q, K and V need one float32/float16 dtype")
    if not (q.flags.c_contiguous and k.flags.c_contiguous and v.flags.c_contiguous):
        fail("Q, K and V must be contiguous")
    return Geometry(tuple(q.shape[:-2]), sq, sk, d, v.shape[-1])


def mask_strides(layer: Layer, mask, geo: Geometry) -> tuple[tuple[int, int, int, int], int, int]:
    """Element strides of the mask over [B0, B1, Sq, Sk] (0 where it broadcasts), B1 and Sq."""
    target = (1,) * (2 - len(geo.batch)) + geo.batch + (geo.sq, geo.sk)
    if mask.ndim > 4:
        raise ValueError(f"layer {layer.name!r}: mask rank {mask.ndim} > 4")
    shape = (1,) * (4 - mask.ndim) + tuple(mask.shape)
    strides = (0,) * (4 - mask.ndim) + tuple(s // mask.itemsize for s in mask.strides)
    out = []
    for axis, (m, t, s) in enumerate(zip(shape, target, strides)):
        if m not in (1, t):
            raise ValueError(f"layer {layer.name!r} (FusedAttention): mask {tuple(mask.shape)} does not broadcast "
                             f"to the scores {target} (axis {axis})")
        out.append(0 if m == 1 else s)
    return tuple(out), target[1], geo.sq


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: dict[int, Any]
    scale: float
    k_transposed: bool
    compute: int
    cublas: Any = None            # CublasHandle (capturable cuBLAS calls)
    scores: Any = None            # fp32 [batch * Sq * Sk]
    probs: Any = None             # fp16 [batch * Sq * Sk] (fp32 layers reuse `scores`)


class CublasAttention(CudaTactic):
    name = "cublas.attention"
    source = "cublas"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (layer.domain == "workbench" and layer.op == "FusedAttention"
                and precision in ("fp32", "tf32", "fp16") and layer.layout != "NHWC")

    def workspace_bytes(self, layer: Layer) -> int:
        shape = layer.output_shapes[0] if layer.output_shapes else None
        if not shape or any(d is None for d in shape) or len(shape) < 2:
            return 0
        rows = math.prod(shape[:-1])
        per = 4 + (2 if layer.precision == "fp16" else 0)
        return rows * shape[-2] * per

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        from cupy_backends.cuda.libs import cublas
        compute = cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if layer.precision == "tf32" else cublas.CUBLAS_COMPUTE_32F
        state = _State(layer, upload_weights(layer, weights), float(layer.attrs.get("scale", 1.0)),
                       bool(layer.attrs.get("k_transposed", 0)), compute, CublasHandle())
        shape = layer.output_shapes[0] if layer.output_shapes else None
        if shape and all(d is not None for d in shape) and len(shape) >= 2:
            self._workspace(state, math.prod(shape[:-1]) * shape[-2], layer.precision == "fp16")
        return state

    @staticmethod
    def _workspace(state: _State, elements: int, half: bool) -> None:
        cp = cupy()
        if state.scores is None or state.scores.size < elements:
            if state.scores is not None:
                log.warning("layer %r: attention workspace grows to %d scores (first run with larger shapes)",
                            state.layer.name, elements)
            state.scores = cp.empty(elements, cp.float32)
            state.probs = None
        if half and (state.probs is None or state.probs.size < elements):
            state.probs = cp.empty(elements, cp.float16)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        from cupy.cuda import runtime
        from cupy_backends.cuda.libs import cublas
        cp = cupy()
        layer = state.layer
        q, k, v, mask = resolve_inputs(state.weights, inputs, 4)[:4]
        out = present_outputs(layer, outputs)[0][1]
        geo = attention_geometry(layer, q, k, v)
        batch = math.prod(geo.batch)
        half = q.dtype == np.float16
        elements = batch * geo.sq * geo.sk
        self._workspace(state, elements, half)
        scores = state.scores
        probs = state.probs if half else scores
        dtype_ab = runtime.CUDA_R_16F if half else runtime.CUDA_R_32F
        stream = stream or cp.cuda.get_current_stream()
        gemm = state.cublas.gemm_strided_batched
        # scoresᵀ (col-major Sk x Sq) = op(K) · Qᵀ; K row-major [Sk, D] is col-major D x Sk: op T
        op_k, ld_k = (cublas.CUBLAS_OP_N, geo.sk) if state.k_transposed else (cublas.CUBLAS_OP_T, geo.d)
        gemm(stream, op_k, cublas.CUBLAS_OP_N, geo.sk, geo.sq, geo.d, k, ld_k, geo.sk * geo.d,
             q, geo.d, geo.sq * geo.d, scores, geo.sk, geo.sq * geo.sk, batch,
             dtype_ab, runtime.CUDA_R_32F, state.compute)
        strides, b1, msq = ((0, 0, 0, 0), 1, 1) if mask is None else mask_strides(layer, mask, geo)
        if mask is not None and mask.dtype.name not in ("float32", "float16"):
            raise ValueError(f"layer {layer.name!r}: mask dtype {mask.dtype.name}; an additive float mask is expected")
        launch_softmax_rows(scores, probs, batch * geo.sq, geo.sk, state.scale, mask, strides, b1, msq)
        # outᵀ (col-major Dv x Sq) = Vᵀ · Pᵀ
        gemm(stream, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N, geo.dv, geo.sq, geo.sk, v, geo.dv, geo.sk * geo.dv,
             probs, geo.sk, geo.sq * geo.sk, out, geo.dv, geo.sq * geo.dv, batch,
             dtype_ab, dtype_ab, state.compute)
        return outputs


_FLASH_DIMS = (32, 64, 128)
_FLASH_WARPS = (4, 8)
_FLASH_INSTANCES = tuple(f"flash_attention<{d},{kt},{tm},{w}>" for d in _FLASH_DIMS for kt in ("true", "false")
                         for tm in ("__half", "float") for w in _FLASH_WARPS)


class FlashAttention(CudaTactic):
    name = "kernels.flash_attention"
    source = "kernels"
    warps: int = 4                      # query rows per block = 16 * warps (4 beat 8 on BERT-base, H100)

    def supports(self, layer: Layer, precision: str) -> bool:
        if not (layer.domain == "workbench" and layer.op == "FusedAttention" and precision == "fp16"
                and layer.layout != "NHWC"):
            return False
        shape = layer.output_shapes[0] if layer.output_shapes else None
        return not shape or shape[-1] is None or shape[-1] in _FLASH_DIMS

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        return _State(layer, upload_weights(layer, weights), float(layer.attrs.get("scale", 1.0)),
                      bool(layer.attrs.get("k_transposed", 0)), 0)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        from workbench.backends.cuda.compile import get_kernel
        layer = state.layer
        q, k, v, mask = resolve_inputs(state.weights, inputs, 4)[:4]
        out = present_outputs(layer, outputs)[0][1]
        geo = attention_geometry(layer, q, k, v)
        if q.dtype != np.float16 or geo.d != geo.dv or geo.d not in _FLASH_DIMS or not out.flags.c_contiguous:
            raise ValueError(f"layer {layer.name!r}: kernels.flash_attention needs fp16 and D == Dv in {_FLASH_DIMS}, "
                             f"got {q.dtype.name} D={geo.d} Dv={geo.dv}")
        if mask is not None and mask.dtype.name not in ("float16", "float32"):
            raise ValueError(f"layer {layer.name!r}: mask dtype {mask.dtype.name}; an additive float mask is expected")
        strides, b1, _ = ((0, 0, 0, 0), 1, 1) if mask is None else mask_strides(layer, mask, geo)
        mask_type = "float" if mask is None or mask.dtype == np.float32 else "__half"
        warps = self.warps
        name = f"flash_attention<{geo.d},{'true' if state.k_transposed else 'false'},{mask_type},{warps}>"
        kernel = get_kernel("attention.cu", name, _FLASH_INSTANCES)
        batch = math.prod(geo.batch)
        grid = (-(-geo.sq // (16 * warps)), batch)
        kernel(grid, (32 * warps,), (q, k, v, out, mask if mask is not None else np.uint64(0),
                              *(np.int64(s) for s in strides), np.int32(b1), np.int32(geo.sq), np.int32(geo.sk),
                              np.float32(state.scale)))
        return outputs


register(CublasAttention())
register(FlashAttention())
