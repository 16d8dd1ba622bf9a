"""workbench::FusedAttention on the GPU: Y = softmax(scale * Q @ K^T + M) @ V.

`cublas.attention` is the plain, correct path: two strided-batched cuBLAS GEMMs (fp32
accumulation; fp32 scores even for fp16 inputs; called through tactics/_cublas.py so a CUDA
graph can capture them) around the row softmax of kernels/norm.cu, which
applies the scale and the broadcast additive mask on the fly. Scores and probabilities live in a
workspace allocated outside `run` (sized from the layer's output shape, assuming a square
self-attention; a larger first run grows it during the warm-up, before any capture).

Layouts, row-major: Q [.., Sq, D], K [.., Sk, D] (or [.., D, Sk] with k_transposed=1),
V [.., Sk, Dv], Y [.., Sq, Dv]; at most two batch dims (BERT: [B, H]); with qkv_layout "bshd"
(passes/fold_attention_transposes.py) all four are [B, S, H, D] and a head is a column block of
each row: both tactics take element strides, so the head transposes are never materialized. The
mask broadcasts to [B0, B1, Sq, Sk] through its strides (0 along broadcast dims), e.g. [B, 1, 1, Sk].

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
    batch: tuple        # (B0, B1): the two batch dims of the scores [B0, B1, Sq, Sk] (1 where absent)
    sq: int
    sk: int
    d: int
    dv: int
    # element strides (B0, B1, row) of Q, K, V and Y; K's row is a key, or a dim when k_transposed
    strides: dict

    def packed(self, *names: str) -> bool:
        """B0 steps over whole B1 groups for these tensors: one strided-batched call covers all."""
        return self.batch[0] == 1 or all(self.strides[n][0] == self.batch[1] * self.strides[n][1] for n in names)


def attention_geometry(layer: Layer, q, k, v, out) -> Geometry:
    """Shapes and strides of one call, checked; errors name the layer and the mismatching input."""
    bshd = layer.attrs.get("qkv_layout", "bhsd") == "bshd"
    k_transposed = bool(layer.attrs.get("k_transposed", 0))

    def fail(why):
        raise ValueError(f"layer {layer.name!r} (FusedAttention): {why}; Q {tuple(q.shape)}, K {tuple(k.shape)}, "
                         f"V {tuple(v.shape)}, k_transposed={int(k_transposed)}, qkv_layout="
                         f"{'bshd' if bshd else 'bhsd'}")
    if not (q.ndim == k.ndim == v.ndim) or q.ndim < 2 or q.ndim > 4 or (bshd and q.ndim != 4):
        fail("Q, K and V need the same rank, 2 to 4 (4 for bshd)")
    if bshd and k_transposed:
        fail("bshd takes K as [B, S, H, D]")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype.name not in ("float32", "float16"):
        fail("Q, K and V need one float32/float16 dtype")
    if any(a.strides[-1] != a.itemsize for a in (q, k, v, out)):
        fail("the last dim of Q, K, V and the output must be contiguous")

    def split(a, seq_axis):
        """(batch dims, seq, features, (B0, B1, row) strides) of one operand."""
        st = [s // a.itemsize for s in a.strides]
        if bshd:                                        # [B, S, H, D]: heads are B1
            return (a.shape[0], a.shape[2]), a.shape[1], a.shape[3], (st[0], st[2], st[1])
        batch, lead = ((1, 1) + tuple(a.shape[:-2]))[-2:], ((0, 0) + tuple(st[:-2]))[-2:]
        return batch, a.shape[seq_axis], a.shape[-1 if seq_axis == -2 else -2], (lead[0], lead[1], st[-2])

    qb, sq, d, qs = split(q, -2)
    kb, sk, dk, ks = split(k, -1 if k_transposed else -2)
    vb, vsk, dv, vs = split(v, -2)
    ob, osq, odv, os_ = split(out, -2)
    if not (qb == kb == vb == ob):
        fail("Q, K, V and the output need the same batch dims (no broadcasting)")
    if dk != d or vsk != sk or osq != sq or odv != dv:
        fail("inner dims disagree")
    return Geometry(qb, sq, sk, d, dv, {"q": qs, "k": ks, "v": vs, "out": os_})


def mask_strides(layer: Layer, mask, geo: Geometry) -> tuple[tuple[int, int, int, int], int, int]:
    """Element strides of the mask over [B0, B1, Sq, Sk] (0 where it broadcasts), B1 and Sq."""
    target = geo.batch + (geo.sq, geo.sk)
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
        return _score_count(layer) * (4 + (2 if layer.precision == "fp16" else 0))

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        from cupy_backends.cuda.libs import cublas
        compute = cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if layer.precision == "tf32" else cublas.CUBLAS_COMPUTE_32F
        state = _State(layer, upload_weights(layer, weights), float(layer.attrs.get("scale", 1.0)),
                       bool(layer.attrs.get("k_transposed", 0)), compute, CublasHandle())
        if _score_count(layer):
            self._workspace(state, _score_count(layer), layer.precision == "fp16")
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
        geo = attention_geometry(layer, q, k, v, out)
        b0, b1 = geo.batch
        half = q.dtype == np.float16
        per_batch = geo.sq * geo.sk
        self._workspace(state, b0 * b1 * per_batch, half)
        scores = state.scores
        probs = state.probs if half else scores
        dtype_ab = runtime.CUDA_R_16F if half else runtime.CUDA_R_32F
        stream = stream or cp.cuda.get_current_stream()
        gemm = state.cublas.gemm_strided_batched
        (_, q1, qr), (_, k1, kr), (_, v1, vr), (_, o1, orow) = (geo.strides[n] for n in ("q", "k", "v", "out"))
        # one strided-batched call over B0 x B1 when B0 steps over whole B1 groups (contiguous
        # [B, H, S, D]); else one call per B0 over the heads ([B, S, H, D]: a head is a column block)
        calls = [(None, b0 * b1)] if geo.packed("q", "k", "v", "out") else [(i, b1) for i in range(b0)]
        at = (lambda a, i: a) if calls[0][0] is None else (lambda a, i: a[i])
        # scoresᵀ (col-major Sk x Sq) = op(K) · Qᵀ; K row-major [Sk, D] is col-major D x Sk: op T
        op_k = cublas.CUBLAS_OP_N if state.k_transposed else cublas.CUBLAS_OP_T
        for i, count in calls:
            part = scores[(i or 0) * b1 * per_batch:]
            gemm(stream, op_k, cublas.CUBLAS_OP_N, geo.sk, geo.sq, geo.d, at(k, i), kr, k1, at(q, i), qr, q1,
                 part, geo.sk, per_batch, count, dtype_ab, runtime.CUDA_R_32F, state.compute)
        strides, mb1, msq = ((0, 0, 0, 0), 1, 1) if mask is None else mask_strides(layer, mask, geo)
        if mask is not None and mask.dtype.name not in ("float32", "float16"):
            raise ValueError(f"layer {layer.name!r}: mask dtype {mask.dtype.name}; an additive float mask is expected")
        launch_softmax_rows(scores, probs, b0 * b1 * geo.sq, geo.sk, state.scale, mask, strides, mb1, msq)
        # outᵀ (col-major Dv x Sq) = Vᵀ · Pᵀ
        for i, count in calls:
            part = probs[(i or 0) * b1 * per_batch:]
            gemm(stream, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N, geo.dv, geo.sq, geo.sk, at(v, i), vr, v1,
                 part, geo.sk, per_batch, at(out, i), orow, o1, count, dtype_ab, dtype_ab, state.compute)
        return outputs


def _score_count(layer: Layer) -> int:
    """Scores one run holds, [B, H, Sq, Sk] from the output's static shape (self-attention: Sk = Sq); 0 if unknown."""
    shape = layer.output_shapes[0] if layer.output_shapes else None
    if not shape or any(d is None for d in shape) or len(shape) < 2:
        return 0
    seq = shape[1] if layer.attrs.get("qkv_layout", "bhsd") == "bshd" else shape[-2]
    return math.prod(shape[:-1]) * seq


_FLASH_DIMS = (32, 64, 128)
# (warps, key tile) per tactic; a 128-key tile holds K and V of D <= 64 in 48 KB of shared memory
_FLASH_SHAPES = ((4, 64), (8, 64), (4, 128))
_FLASH_INSTANCES = tuple(f"flash_attention<{d},{kt},{tm},{w},{bc}>" for d in _FLASH_DIMS for kt in ("true", "false")
                         for tm in ("__half", "float") for w, bc in _FLASH_SHAPES if bc == 64 or d <= 64)


class FlashAttention(CudaTactic):
    """One tactic per block shape: 16 * warps query rows a block (8 warps load each key tile once per
    128 queries, 4 warps make twice the blocks for short sequences) and a key tile of 64 or 128; the
    autotuner picks."""
    source = "kernels"

    def __init__(self, warps: int = 4, keys: int = 64):
        self.warps, self.keys = warps, keys
        self.name = ("kernels.flash_attention" + ("" if warps == 4 else f"_w{warps}")
                     + ("" if keys == 64 else f"_k{keys}"))

    def supports(self, layer: Layer, precision: str) -> bool:
        if not (layer.domain == "workbench" and layer.op == "FusedAttention" and precision == "fp16"
                and layer.layout != "NHWC"):
            return False
        shape = layer.output_shapes[0] if layer.output_shapes else None
        dims = _FLASH_DIMS if self.keys == 64 else tuple(d for d in _FLASH_DIMS if d <= 64)
        return not shape or shape[-1] is None or shape[-1] in dims

    def prepare(self, layer: Layer, weights: dict[str, Any]) -> _State:
        return _State(layer, upload_weights(layer, weights), float(layer.attrs.get("scale", 1.0)),
                      bool(layer.attrs.get("k_transposed", 0)), 0)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        from workbench.backends.cuda.compile import get_kernel
        layer = state.layer
        q, k, v, mask = resolve_inputs(state.weights, inputs, 4)[:4]
        out = present_outputs(layer, outputs)[0][1]
        geo = attention_geometry(layer, q, k, v, out)
        strides = [x for n in ("q", "k", "v", "out") for x in geo.strides[n]]
        paired = geo.strides["q"] + geo.strides["out"]      # Q and Y move in 32-bit half pairs
        if q.dtype != np.float16 or geo.d != geo.dv or geo.d not in _FLASH_DIMS or any(x % 2 for x in paired):
            raise ValueError(f"layer {layer.name!r}: kernels.flash_attention needs fp16, D == Dv in {_FLASH_DIMS} "
                             f"and even Q and Y strides, got {q.dtype.name} D={geo.d} Dv={geo.dv} strides {strides}")
        if mask is not None and mask.dtype.name not in ("float16", "float32"):
            raise ValueError(f"layer {layer.name!r}: mask dtype {mask.dtype.name}; an additive float mask is expected")
        m_strides = (0, 0, 0, 0) if mask is None else mask_strides(layer, mask, geo)[0]
        mask_type = "float" if mask is None or mask.dtype == np.float32 else "__half"
        warps = self.warps
        name = f"flash_attention<{geo.d},{'true' if state.k_transposed else 'false'},{mask_type},{warps},{self.keys}>"
        if name not in _FLASH_INSTANCES:
            raise ValueError(f"layer {layer.name!r}: {self.name} has no instance for D={geo.d}")
        kernel = get_kernel("attention.cu", name, _FLASH_INSTANCES)
        grid = (-(-geo.sq // (16 * warps)), geo.batch[0] * geo.batch[1])
        kernel(grid, (32 * warps,), (q, k, v, out, mask if mask is not None else np.uint64(0),
                                     *(np.int64(x) for x in m_strides), np.int32(geo.batch[1]), np.int32(geo.sq),
                                     np.int32(geo.sk), np.float32(state.scale), *(np.int64(x) for x in strides)))
        return outputs


register(CublasAttention())
for _warps, _keys in _FLASH_SHAPES:
    register(FlashAttention(_warps, _keys))
