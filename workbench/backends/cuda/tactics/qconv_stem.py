"""kernels.qconv_stem: a workbench::FusedQConv image stem (7x7 taps, 3 input channels, 64 outputs, any
stride and padding, no residual, int8 output) as an implicit GEMM on the integer tensor cores, one
32-byte window of a staged input row a filter row (kernels/qconv_stem.cu), bit-exact with the CPU
emulation. cuDNN refuses int8 convolutions on 3 channels, and its fp16 form with an int8 output ran
ResNet-50's stem at 3.3 ms against 0.6 ms for the fp16 network's (H100/H200, batch 256); a direct
dp4a convolution (the kernel before this one) took 1.7 ms. Other shapes: `prepare` says no and the
other tactics run the layer.

Tried and not kept: the max pool after the stem fused into this kernel (the block's conv tile kept in
shared memory, only pooled pixels written). On the H100 at batch 256 it took 0.34 to 0.47 ms over eight
block shapes, against 0.23 ms for this kernel plus 0.10 for kernels.pool2d: the overlapping windows
recompute a fifth more of the convolution, and the pool pass behind a block-wide barrier costs more
than the 205 MB round trip it saves, while this kernel is bound by its instructions, not its stores.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel, instance
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.epilogue import activation_of
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics.conv_spec import ConvWeights, qconv_constants
from workbench.backends.cuda.tactics.qconv_int8 import epilogue_constants, run_arrays, takes_int8_layer

__all__ = ["QConvStem"]

_SOURCE = "qconv_stem.cu"
_SHAPES = ((7, 7, 3, 64),)                  # (R, S, C, K) instances compiled
_INSTANCES = tuple(instance("qconv_stem", *shape) for shape in _SHAPES)
_WINDOW = 32                                # bytes of a filter row's A window: one k32 MMA step
_WARPS = 8                                  # the kernel's wb_stem::WARPS
_COLUMNS = 128                              # most output columns a block (TQ)
_ROWS = 8                                   # output rows a block (TR): they share input rows


@dataclasses.dataclass
class _State:
    layer: Layer
    kernel: Any
    weights: ConvWeights
    packed: Any                 # device int32 [R][K/8][32 lanes][2]: B fragments
    multiplier: Any
    bias: Any                   # device float32 [K]: zeros for a layer without (adding +0 changes no int8 result)
    epilogue: tuple             # the kernel's last arguments: leaky, alpha, lo, hi
    fixed_smem: int             # bytes of shared memory besides the staged rows: weights, output tiles
    geos: dict = dataclasses.field(default_factory=dict)


class QConvStem(CudaTactic):
    name = "kernels.qconv_stem"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        return (takes_int8_layer(layer, precision) and len(layer.inputs) <= 4
                and (layer.attrs.get("auto_pad") or "NOTSET") == "NOTSET")

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        w, host_m, host_b = qconv_constants(layer, weights, self.name)
        k, c, r, s = w.shape
        if (r, s, c, k) not in _SHAPES:
            raise ValueError(f"{self.name}: layer {layer.name!r}: weight {k}x{c}x{r}x{s}; this kernel is compiled "
                             f"for (K, C, R, S) in {[(kk, cc, rr, ss) for rr, ss, cc, kk in _SHAPES]}")
        # B_r[j, n] = byte j of filter n's row r (S*C bytes in NHWC order, zero-padded to 32), as int32
        # words (little endian: byte 0 lowest) in fragment order: lane 4g + t holds words t and t + 4
        # of filter 8 * tile + g
        rows = np.zeros((r, k, _WINDOW), np.int8)
        rows[:, :, :s * c] = w.transpose(2, 0, 3, 1).reshape(r, k, s * c)
        words = rows.view(np.int32).reshape(r, k // 8, 8, 2, 4)          # [r][tile][g][half][t]
        fragments = np.ascontiguousarray(words.transpose(0, 1, 2, 4, 3))  # [r][tile][g][t][half]
        cp = cupy()
        kernel = get_kernel(_SOURCE, instance("qconv_stem", r, s, c, k), _INSTANCES)
        multiplier, bias, (_, *epilogue) = epilogue_constants(self.name, layer, host_m, host_b)   # no residual
        cw = ConvWeights(w, None, 1, np.dtype(np.int8), activation_of(layer), False)
        fixed = fragments.nbytes + _WARPS * 16 * (k + 16)
        return _State(layer, kernel, cw, cp.asarray(fragments), multiplier, bias, tuple(epilogue), fixed)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, _, y, geo = run_arrays(self.name, state, inputs, outputs)
        if geo.rows == 0:
            return outputs
        columns = min(_COLUMNS, -(-geo.q // 16) * 16)   # 112 for ResNet's stem: whole m16 tiles, none idle
        rows = min(_ROWS, geo.p)
        # the kernel's staged row: from a 16-byte boundary (up to 15 bytes early) past the last
        # window's 32 bytes and the realigning over-read
        row_bytes = (15 + (columns - 1) * geo.stride_w * geo.c + 36 + 15) // 16 * 16
        smem = state.fixed_smem + (geo.r + (rows - 1) * geo.stride_h) * row_bytes
        grid = (-(-geo.q // columns), -(-geo.p // rows), geo.n)
        state.kernel(grid, (_WARPS * 32, 1, 1),
                     (x, state.packed, state.multiplier, state.bias, y,
                      np.int32(geo.h), np.int32(geo.w), np.int32(geo.p), np.int32(geo.q), np.int32(geo.stride_h),
                      np.int32(geo.stride_w), np.int32(geo.pad_top), np.int32(geo.pad_left), np.int32(rows),
                      np.int32(columns), *state.epilogue),
                     shared_mem=smem, stream=stream)
        return outputs


register(QConvStem())
