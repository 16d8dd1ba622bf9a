"""Our implicit-GEMM tensor-core convolution (kernels/conv_igemm.cu), one tactic per tile shape.

fp16 NHWC in, fp32 accumulate, one fused epilogue (bias + residual + activation + cast to fp16),
so a ResNet block's conv + BN + add + ReLU is a single kernel with no intermediate in memory.
Needs C % 8 == 0 and K % 8 == 0 (16-byte vector loads of channels, paired fp16 stores), group 1;
the first 3-channel conv of a CNN goes to the direct, im2col or cuDNN tactics instead.

Tile shapes, as (BM, BN, BK, WM, WN, STAGES): big tiles reuse each loaded byte most (large
layers), small ones keep all 132 SMs busy when M = N*P*Q or K is small (batch 1, 7x7 layers).
Measured on an H100 (ResNet-50 layers, batch 256): about 210 TFLOP/s on the 3x3 layers, 40-50%
of cuDNN's fused plans (mma.sync here, Hopper's wgmma there) and on par with cuBLAS on several
1x1 layers; cuDNN wins most layers when installed, these need no optional package.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics.conv_spec import (conv_operands, ConvWeights, check_arrays, conv_weights,
                                                     is_conv2d_nhwc, known_out_channels)

__all__ = ["ImplicitGemmConv", "CONFIGS"]

_FILE = "conv_igemm.cu"
CONFIGS = ((128, 128, 32, 64, 32, 4), (128, 64, 32, 64, 32, 4), (64, 64, 32, 32, 32, 4),
           (128, 128, 64, 64, 32, 3), (64, 128, 32, 32, 64, 4), (32, 64, 32, 32, 32, 4))
_INSTANCES = tuple("conv_igemm<{},{},{},{},{},{}>".format(*c) for c in CONFIGS)
_INT32_MAX = 2 ** 31 - 1


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: ConvWeights
    w: Any                  # device fp16 [K][R][S][C]
    bias: Any               # device float32 [K] or None
    kernel: Any
    geos: dict = dataclasses.field(default_factory=dict)


class ImplicitGemmConv(CudaTactic):
    source = "kernels"

    def __init__(self, bm: int, bn: int, bk: int, wm: int, wn: int, stages: int):
        self.config = (bm, bn, bk, wm, wn, stages)
        self.name = f"kernels.conv_igemm_{bm}x{bn}x{bk}"
        self.threads = (bm // wm) * (bn // wn) * 32
        # the cp.async ring, then (reused) the fp32 tile the epilogue stages
        self.smem = max(stages * (bm + bn) * (bk + 8) * 2, bm * (bn + 8) * 4)

    def supports(self, layer: Layer, precision: str) -> bool:
        if not is_conv2d_nhwc(layer, precision, precisions=("fp16",)):
            return False
        k = known_out_channels(layer)
        # C % 8 is checked in prepare (the weight's shape says C; the layer alone does not)
        return int(layer.attrs.get("group", 1)) == 1 and (k is None or k % 8 == 0)

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cw = conv_weights(layer, weights, self.name)
        k, c = cw.w.shape[:2]
        if cw.group != 1 or c % 8 or k % 8 or cw.dtype != np.float16:
            raise ValueError(f"{self.name}: layer {layer.name!r} ({layer.precision}): needs fp16, group 1 and C, K "
                             f"multiples of 8 (got group {cw.group}, C {c * cw.group}, K {k})")
        cp = cupy()
        kernel = get_kernel(_FILE, "conv_igemm<{},{},{},{},{},{}>".format(*self.config), _INSTANCES)
        if self.smem > 48 * 1024:           # beyond the default: the block must opt in
            kernel.max_dynamic_shared_size_bytes = self.smem
        w = cp.asarray(np.ascontiguousarray(cw.w.transpose(0, 2, 3, 1)))          # KRSC
        return _State(layer, cw, w, None if cw.bias is None else cp.asarray(cw.bias), kernel)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, cw, x, z, y, geo = conv_operands(self.name, state, inputs, outputs)
        check_arrays(self.name, layer, cw, x, z, y)
        for what, array, align in (("input", x, 16), ("residual", z, 16), ("output", y, 16)):
            if array is not None and array.data.ptr % align:
                raise ValueError(f"{self.name}: layer {layer.name!r}: {what} address is not {align}-byte aligned")
        if max(geo.rows, geo.n * geo.h * geo.w * geo.c, geo.rows * geo.k) > _INT32_MAX:
            raise ValueError(f"{self.name}: layer {layer.name!r}: {geo.out_shape} is too large for 32-bit indexing")
        if geo.rows == 0 or geo.k == 0:
            return outputs
        bm, bn = self.config[:2]
        blocks = -(-geo.rows // bm) * -(-geo.k // bn)
        code, p0, p1 = cw.activation
        i32, f32 = np.int32, np.float32
        state.kernel((blocks,), (self.threads,),
                     (x, state.w, state.bias, z, y, i32(geo.n), i32(geo.h), i32(geo.w), i32(geo.c), i32(geo.k),
                      i32(geo.p), i32(geo.q), i32(geo.r), i32(geo.s), i32(geo.stride_h), i32(geo.stride_w),
                      i32(geo.pad_top), i32(geo.pad_left), i32(geo.dil_h), i32(geo.dil_w), i32(code), f32(p0),
                      f32(p1)),
                     shared_mem=self.smem)
        return outputs


for _config in CONFIGS:
    register(ImplicitGemmConv(*_config))
