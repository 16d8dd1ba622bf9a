"""kernels.qconv_rows_<TP>x<TQ>: workbench::FusedQConv layers with 64 input channels, 3x3 taps and stride 1
(ResNet-18/34/50's and VGG's first-stage 3x3 layers) on the int8 tensor cores, from input rows staged in
shared memory once a tile (kernels/qconv_rows.cu), bit-exact with the CPU emulation:

    Y[p, q, k] = int8(act(float32(sum_{r,s,c} X[p + r - pad, q + s - pad, c] * W[k, c, r, s]) * M[k] + B[k]
                          (+ float32(Z[p, q, k]) * residual_scale)))

cuDNN's int8 kernels run ResNet-50's 64-channel 3x3 layer slower than its 128-channel ones with the
same arithmetic (0.18 against 0.057 ms at batch 256 on the H100), and kernels.qconv_igemm_* gathers
each tap from L2 (0.21 ms); this kernel runs it in 0.102 ms (bench/results/probe_qconv_tactics.json).
A tile is TP x TQ output pixels; the autotuner picks the tile per layer.
Scope (`supports` / `prepare` say no otherwise): 64 input channels, output channels a multiple of 64,
3x3 taps, stride 1, explicit padding, group 1, no dilation, int8 output and residual.
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
from workbench.backends.cuda.tactics.qconv_int8 import (epilogue_constants, resident_blocks, run_arrays,
                                                        takes_int8_layer)

__all__ = ["QConvRows", "TILES"]

SOURCE = "qconv_rows.cu"
# (TP, TQ, warps): output rows and columns a tile, two m16 fragments a warp. 8 x 28 fits 56- and
# 28-wide maps exactly (ResNet); 4 x 32 is the smaller stage for other widths
TILES = ((8, 28, 7), (4, 32, 4))
_TAPS = ((3, 3),)                        # (R, S) instances compiled
_CHANNELS = 64                           # input channels: the kernel's C, one staged pixel row
_BLOCK_N = 64                            # output channels a block
_LDX, _LDO = _CHANNELS + 16, _BLOCK_N + 16   # bytes a staged pixel / output tile row
_INSTANCES = tuple(instance("qconv_rows", r, s, *tile) for r, s in _TAPS for tile in TILES)


@dataclasses.dataclass
class _State:
    layer: Layer
    kernel: Any
    w: Any                      # device int8 [K, R, S, C]
    multiplier: Any             # device float32 [K]
    bias: Any                   # device float32 [K] (zeros for none)
    weights: ConvWeights        # the host weight and activation, for the geometry
    smem_bytes: int
    blocks: int                 # persistent blocks the GPU holds at once
    epilogue: tuple             # the kernel's last arguments: zscale, leaky, alpha, lo, hi
    geos: dict = dataclasses.field(default_factory=dict)


class QConvRows(CudaTactic):
    source = "kernels"

    def __init__(self, tile):
        self.tp, self.tq, warps = tile
        self.threads = 32 * warps
        self.name = f"kernels.qconv_rows_{self.tp}x{self.tq}"

    def supports(self, layer: Layer, precision: str) -> bool:
        attrs = layer.attrs
        kernel = attrs.get("kernel_shape")
        return (takes_int8_layer(layer, precision) and kernel is not None and tuple(kernel) in _TAPS
                and all(v == 1 for v in attrs.get("strides") or [1])
                and (attrs.get("auto_pad") or "NOTSET") == "NOTSET")

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        w, host_m, host_b = qconv_constants(layer, weights, self.name)
        k, c, r, s = w.shape
        if (r, s) not in _TAPS or c != _CHANNELS or k % _BLOCK_N:
            raise ValueError(f"{self.name}: layer {layer.name!r}: weight {k}x{c}x{r}x{s}; this kernel takes "
                             f"{_CHANNELS} input channels, output channels a multiple of {_BLOCK_N} and taps "
                             f"{list(_TAPS)}")
        multiplier, bias, epilogue = epilogue_constants(self.name, layer, host_m, host_b)
        kernel = get_kernel(SOURCE, instance("qconv_rows", r, s, self.tp, self.tq, self.threads // 32), _INSTANCES)
        staged = (self.tp + r - 1) * (self.tq + s - 1)
        smem_bytes = r * s * _BLOCK_N * _CHANNELS + 2 * staged * _LDX + self.tp * self.tq * _LDO
        kernel.max_dynamic_shared_size_bytes = smem_bytes
        blocks = resident_blocks(kernel, self.threads, smem_bytes)
        krsc = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        cw = ConvWeights(w, None, 1, np.dtype(np.int8), activation_of(layer), False)
        return _State(layer, kernel, cupy().asarray(krsc), multiplier, bias, cw, smem_bytes, blocks, epilogue)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, z, y, geo = run_arrays(self.name, state, inputs, outputs)
        if geo.rows == 0:
            return outputs
        tiles = geo.n * -(-geo.p // self.tp) * -(-geo.q // self.tq)
        n_blocks = geo.k // _BLOCK_N
        grid = (max(1, min(tiles, state.blocks // n_blocks)), n_blocks, 1)
        state.kernel(grid, (self.threads, 1, 1),
                     (x, state.w, state.multiplier, state.bias, z if z is not None else np.uint64(0), y,
                      np.int32(geo.n), np.int32(geo.h), np.int32(geo.w), np.int32(geo.p), np.int32(geo.q),
                      np.int32(geo.k), np.int32(geo.pad_top), np.int32(geo.pad_left), *state.epilogue),
                     shared_mem=state.smem_bytes, stream=stream)
        return outputs


for _tile in TILES:
    register(QConvRows(_tile))
