"""FusedQConv layers with int8 output as one INT8 tensor-core implicit GEMM (kernels/qconv_igemm.cu)
with the requantizing epilogue fused; bit-exact with the CPU emulation (same float32 ops, same order):

    Y[m, k] = int8(act(float32(sum_j A[m, j] * W[k, j]) * M[k] + B[k] + float32(Z[m, k]) * residual_scale))

Two families of tactics share the kernel:
  - kernels.qconv1x1_<BM>x<BN>[_s<stages>]: 1x1 convolutions (any stride, no padding). They are
    memory bound, and cuDNN's int8 1x1 convolutions with a residual move about 1.2 TB/s on the H100.
    This kernel prefetches the residual with the operands, keeps persistent blocks streaming tiles
    through one cp.async ring, keeps each block's weight tile in shared memory for all its tiles
    (KEEP_W: the grid is a multiple of the output-channel tiles) and stores through a shared-memory
    tile in 16-byte rows. Measured (H100, b256, bench/probe_qconv_tactics.py): it beats cuDNN on the
    residual layers of 64 to 256 channels (ResNet-50 layer1 conv3 0.205 against 0.374 ms, layer2 0.128
    against 0.19, layer3 0.090 against 0.099), the 64-channel downsample and layer1.0's 64 -> 64 conv1
    (0.049 against 0.069), and loses on wider inputs. ncu on layer3 conv3: issue slots half busy, no
    pipe over 35%, DRAM 30%: latency between the block-wide phases (copy wait, MMA, epilogue), not a
    throughput limit. Tried there and not kept (same probe): 3 and 4 ring stages without kept weights,
    one barrier a step (wait, barrier, then issue), each warp storing its own 32-byte rows (slower: 4
    to 13%), and 64x256 / 128x256 tiles.
  - kernels.qconv_igemm_<BM>x<BN>: any other taps and padding: A's rows gather the input pixel under
    each tap (a copy cursor, no per-step divisions), zeros in the padding. Slower than cuDNN on
    ResNet-50's 3x3 layers (H100, b256: 0.214 against 0.17 ms on layer1 conv2, 0.15 against 0.057 on
    layer2): each tap is a ring step that re-reads its input through L2. kernels.qconv_rows_* stage
    the rows once instead, for 64 channels.
The autotuner picks per layer. Scope (`supports` / `prepare` say no otherwise, and cuDNN runs the
layer): group 1, no dilation, int8 output, int8 residual, 64 to 256 input channels (a multiple of 64), K a multiple of
the tile's BN, activations "", Relu, Clip and LeakyRelu, finite parameters.
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

__all__ = ["QConv1x1", "QConvTaps", "CONFIGS_1X1", "CONFIGS_TAPS"]

SOURCE = "qconv_igemm.cu"
# (BM, BN, warps along M, warps along N, ring stages, blocks per SM for __launch_bounds__, KEEP_W).
# 1x1: 128x128 with two and three stages (three wins on the longer channel loops: layer3 conv3 and the
# strided downsample) and 128x64 (64 output channels); each is the fastest somewhere on ResNet-50.
CONFIGS_1X1 = ((128, 128, 2, 4, 2, 2, 1), (128, 128, 2, 4, 3, 2, 1), (128, 64, 4, 2, 2, 3, 1))
# Any taps: a 3x3 weight row is up to 9 x 256 bytes, too many to keep, so W goes through the ring.
# 64x128 and 128x64 (32x32 warp tiles, fewer registers: three blocks an SM) and 128x128; deeper rings
# (3 and 4 stages) measured slower on every layer
CONFIGS_TAPS = ((64, 128, 2, 4, 2, 3, 0), (128, 128, 2, 4, 2, 2, 0), (128, 64, 4, 2, 2, 3, 0))
# Above this many input channels cuDNN's int8 kernels were faster on every ResNet-50 layer, with a
# residual too (layer4 conv3, 512 channels: 0.053 ms against 0.080 for the best of ours before the
# weights were kept; layer3 conv3, 256: ours 0.090 against 0.099; H100, bench/probe_qconv_tactics.py):
# the longer the channel loop, the longer the MMA phase that the epilogue does not overlap. The tactic
# steps aside there rather than cost build time; a kept 512-channel weight tile would not fit twice.
_MOST_CHANNELS = 256
_CHANNEL_STEP = 64                       # channels a ring stage holds (BK in the kernel)
_SMEM_DEFAULT_LIMIT = 48 * 1024          # more needs the kernel's opt-in attribute


_ALL = tuple(instance("qconv_igemm", *c) for c in CONFIGS_1X1 + CONFIGS_TAPS)


@dataclasses.dataclass
class _State:
    layer: Layer
    kernel: Any
    w: Any                      # device int8 [K, R * S * C]: taps and channels in (r, s, c) order
    multiplier: Any             # device float32 [K]
    bias: Any                   # device float32 [K]: zeros for a layer without (adding +0 changes no int8 result)
    weights: ConvWeights        # the host weight and activation, for the geometry
    smem_bytes: int
    blocks: int                 # persistent blocks: as many as fit on the GPU at once
    epilogue: tuple             # the kernel's last arguments: zscale, leaky, alpha, lo, hi
    geos: dict = dataclasses.field(default_factory=dict)


class QConv1x1(CudaTactic):
    """1x1 layers, any stride, no padding."""
    source = "kernels"
    family = "qconv1x1"

    def __init__(self, config):
        self.config = config
        self.bm, self.bn, warps_m, warps_n, self.stages, _, keep_w = config
        self.keep_w = bool(keep_w)
        self.threads = 32 * warps_m * warps_n
        self.name = f"kernels.{self.family}_{self.bm}x{self.bn}" + (f"_s{self.stages}" if self.stages != 2 else "")

    def supports(self, layer: Layer, precision: str) -> bool:
        return takes_int8_layer(layer, precision) and self._takes_window(layer.attrs)

    def _takes_window(self, attrs) -> bool:
        kernel = attrs.get("kernel_shape")
        return ((kernel is None or tuple(kernel) == (1, 1))          # None: prepare checks the weight
                and all(v == 0 for v in attrs.get("pads") or [0])
                and (attrs.get("auto_pad") or "NOTSET") in ("NOTSET", "VALID"))

    def _check_taps(self, layer: Layer, w: np.ndarray) -> None:
        if w.shape[2:] != (1, 1):
            raise ValueError(f"{self.name}: layer {layer.name!r}: weight {layer.inputs[1]!r} has {w.shape[2]}x"
                             f"{w.shape[3]} taps, this kernel takes 1x1")

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        w, host_m, host_b = qconv_constants(layer, weights, self.name)
        self._check_taps(layer, w)
        k, c, r, s = w.shape
        if c > _MOST_CHANNELS:
            raise ValueError(f"{self.name}: layer {layer.name!r}: {c} input channels; above {_MOST_CHANNELS} "
                             f"cuDNN's int8 kernels are faster (bench/probe_qconv_tactics.py)")
        if c % _CHANNEL_STEP or k % self.bn:
            raise ValueError(f"{self.name}: layer {layer.name!r}: {c} input and {k} output channels; this kernel "
                             f"needs input channels a multiple of {_CHANNEL_STEP} and output channels of {self.bn}")
        multiplier, bias, epilogue = epilogue_constants(self.name, layer, host_m, host_b)
        kernel = get_kernel(SOURCE, instance("qconv_igemm", *self.config), _ALL)
        most = self._smem_bytes(1, _MOST_CHANNELS)
        if most > _SMEM_DEFAULT_LIMIT:         # one function serves every layer: opt in to the config's most
            kernel.max_dynamic_shared_size_bytes = most
        smem_bytes = self._smem_bytes(r * s * c // _CHANNEL_STEP, r * s * c)
        blocks = resident_blocks(kernel, self.threads, smem_bytes)
        rows = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(k, r * s * c))
        cw = ConvWeights(w, None, 1, np.dtype(np.int8), activation_of(layer), False)
        return _State(layer, kernel, cupy().asarray(rows), multiplier, bias, cw, smem_bytes, blocks, epilogue)

    def _smem_bytes(self, steps: int, row_len: int) -> int:
        """The residual/output tiles, then the ring (kernels/qconv_igemm.cu, out_tiles); `steps`: ring
        steps a tile, R * S * C / 64; `row_len`: R * S * C, bytes of a weight row."""
        out_tiles = min(self.stages, 1 + -(-(self.stages - 1) // steps))
        ring_rows = self.bm if self.keep_w else self.bm + self.bn
        kept = self.bn * (row_len + 16) if self.keep_w else 0
        return out_tiles * self.bm * (self.bn + 16) + self.stages * ring_rows * (_CHANNEL_STEP + 16) + kept

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        x, z, y, geo = run_arrays(self.name, state, inputs, outputs)
        m = geo.n * geo.p * geo.q
        if m == 0:
            return outputs
        null = np.uint64(0)
        n_tiles = geo.k // self.bn
        blocks = state.blocks
        if self.keep_w:                        # every block keeps one output-channel tile's weights
            blocks = max(blocks // n_tiles, 1) * n_tiles
        blocks = min(blocks, -(-m // self.bm) * n_tiles)
        state.kernel((blocks, 1, 1), (self.threads, 1, 1),
                     (x, state.w, state.multiplier, state.bias, z if z is not None else null, y, np.int32(m),
                      np.int32(geo.k), np.int32(geo.c), np.int32(geo.h), np.int32(geo.w), np.int32(geo.p),
                      np.int32(geo.q), np.int32(geo.stride_h), np.int32(geo.stride_w), np.int32(geo.r),
                      np.int32(geo.s), np.int32(geo.pad_top), np.int32(geo.pad_left), *state.epilogue),
                     shared_mem=state.smem_bytes, stream=stream)
        return outputs


class QConvTaps(QConv1x1):
    """Any other window: taps gathered per ring step, zeros in the padding."""
    family = "qconv_igemm"

    def _takes_window(self, attrs) -> bool:
        kernel = attrs.get("kernel_shape")
        return (kernel is not None and tuple(kernel) != (1, 1)
                and (attrs.get("auto_pad") or "NOTSET") == "NOTSET")

    def _check_taps(self, layer: Layer, w: np.ndarray) -> None:
        if w.shape[2:] == (1, 1):
            raise ValueError(f"{self.name}: layer {layer.name!r}: a 1x1 weight; kernels.qconv1x1_* take those")


for _config in CONFIGS_1X1:
    register(QConv1x1(_config))
for _config in CONFIGS_TAPS:
    register(QConvTaps(_config))
