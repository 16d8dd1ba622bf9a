"""kernels.qconv1x1_<BM>x<BN>: workbench::FusedQConv layers that are 1x1 convolutions (any stride, no
padding, group 1, NHWC) with int8 output, as one INT8 tensor-core kernel (kernels/qconv1x1.cu) with the
requantizing epilogue fused; bit-exact with the CPU emulation (same float32 ops, same order):

    Y[m, k] = int8(act(float32(sum_c X[row(m), c] * W[k, c]) * M[k] + B[k] + float32(Z[m, k]) * residual_scale))

Why our own kernel: the 1x1 layers are memory bound, and cuDNN's int8 1x1 convolutions with a
residual move about 1.2 TB/s on the H100. This one prefetches the residual with the operands, keeps
persistent blocks streaming tiles through one cp.async ring and stores through a shared-memory tile
in 16-byte rows. Measured (bench/results/probe_qconv_tactics.json): it beats cuDNN on the 64-channel
residual layers (ResNet-50 layer1 conv3) and loses elsewhere; its limit there is the per-output float
epilogue's instructions, not DRAM. The autotuner picks per layer. Scope (`supports` / `prepare` say
no otherwise, and cuDNN runs the layer): int8 output, int8 residual, 64 or 128 input channels, K a
multiple of the tile's BN, activations "", Relu, Clip and LeakyRelu, finite parameters.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from onnx import TensorProto

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.epilogue import INT8_ACTIVATIONS, activation_of, int8_clamp
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics.conv_spec import is_conv2d_nhwc, qconv_constants

__all__ = ["QConv1x1", "CONFIGS"]

SOURCE = "qconv1x1.cu"
# (BM, BN, warps along M, warps along N, ring stages, blocks per SM for __launch_bounds__): 64x128
# and 128x64 (32x32 warp tiles, fewer registers: three blocks an SM) and 128x128; deeper rings
# (3 and 4 stages) measured slower on every layer
CONFIGS = ((64, 128, 2, 4, 2, 3), (128, 128, 2, 4, 2, 2), (128, 64, 4, 2, 2, 3))
# Above this many input channels cuDNN's int8 kernels were faster on every ResNet-50 layer, with a
# residual too (layer3/4 conv3: 0.099 and 0.053 ms against 0.115 and 0.094 for the best of ours, H100;
# bench/probe_qconv_tactics.py): the tactic steps aside rather than cost build time.
_MOST_CHANNELS = 128
_CHANNEL_STEP = 64                       # channels a ring stage holds (BK in the kernel)
_SMEM_DEFAULT_LIMIT = 48 * 1024          # more needs the kernel's opt-in attribute
_ALIGN = 16
_FINITE = 1e30                           # |multiplier|, |bias|, |residual scale| below this: no inf, no NaN


def _expression(config) -> str:
    return "qconv1x1<{}, {}, {}, {}, {}, {}>".format(*config)


_ALL = tuple(_expression(c) for c in CONFIGS)


@dataclasses.dataclass
class _State:
    layer: Layer
    kernel: Any
    w: Any                      # device int8 [K, C]
    multiplier: Any             # device float32 [K]
    bias: Any                   # device float32 [K]: zeros for a layer without (adding +0 changes no int8 result)
    strides: tuple[int, int]
    smem_bytes: int
    blocks: int                 # persistent blocks: as many as fit on the GPU at once
    epilogue: tuple             # the kernel's last arguments: zscale, leaky, alpha, lo, hi
    k: int
    c: int


class QConv1x1(CudaTactic):
    source = "kernels"

    def __init__(self, config):
        self.config = config
        self.bm, self.bn, warps_m, warps_n, self.stages, _ = config
        self.threads = 32 * warps_m * warps_n
        self.name = f"kernels.qconv1x1_{self.bm}x{self.bn}"

    def supports(self, layer: Layer, precision: str) -> bool:
        if not is_conv2d_nhwc(layer, precision, ("int8",)) or activation_of(layer)[0] not in INT8_ACTIVATIONS:
            return False
        attrs = layer.attrs
        kernel = attrs.get("kernel_shape")
        return ((kernel is None or tuple(kernel) == (1, 1))          # None: prepare checks the weight
                and all(v == 0 for v in attrs.get("pads") or [0])
                and (attrs.get("auto_pad") or "NOTSET") in ("NOTSET", "VALID")
                and all(v == 1 for v in attrs.get("dilations") or [1])
                and int(attrs.get("group", 1)) == 1
                and attrs.get("output_dtype", TensorProto.INT8) == TensorProto.INT8)

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        w, host_m, host_b = qconv_constants(layer, weights, self.name)
        if w.shape[2:] != (1, 1):
            raise ValueError(f"{self.name}: layer {layer.name!r}: weight {layer.inputs[1]!r} has {w.shape[2]}x"
                             f"{w.shape[3]} taps, this kernel takes 1x1")
        k, c = w.shape[:2]
        if c > _MOST_CHANNELS:
            raise ValueError(f"{self.name}: layer {layer.name!r}: {c} input channels; above {_MOST_CHANNELS} "
                             f"cuDNN's int8 kernels are faster (bench/probe_qconv_tactics.py)")
        if c % _CHANNEL_STEP or k % self.bn:
            raise ValueError(f"{self.name}: layer {layer.name!r}: {c} input and {k} output channels; this kernel "
                             f"needs input channels a multiple of {_CHANNEL_STEP} and output channels of {self.bn}")
        residual_scale = np.float32(layer.attrs.get("residual_scale", 1.0))
        for what, values in (("multiplier", host_m), ("bias", host_b), ("residual_scale", residual_scale)):
            # the kernel's clamp-then-round has no NaN path: bounded parameters keep every value finite
            if values is not None and not np.all(np.abs(values) < _FINITE):
                raise ValueError(f"{self.name}: layer {layer.name!r}: {what} has values that are not finite or "
                                 f"beyond {_FINITE:g}; cuDNN runs this layer")
        kernel = get_kernel(SOURCE, _expression(self.config), _ALL)
        most = self._smem_bytes(_CHANNEL_STEP)
        if most > _SMEM_DEFAULT_LIMIT:         # one function serves every layer: opt in to the config's most
            kernel.max_dynamic_shared_size_bytes = most
        smem_bytes = self._smem_bytes(c)
        blocks = _resident_blocks(kernel, self.threads, smem_bytes)
        cp = cupy()
        multiplier = cp.asarray(host_m)
        bias = cp.asarray(np.zeros(k, np.float32) if host_b is None else host_b)
        strides = tuple(int(v) for v in layer.attrs.get("strides") or (1, 1))
        epilogue = (residual_scale, *int8_clamp(layer))
        return _State(layer, kernel, cp.asarray(np.ascontiguousarray(w.reshape(k, c))), multiplier, bias,
                      strides, smem_bytes, blocks, epilogue, k, c)

    def _smem_bytes(self, c: int) -> int:
        """The residual/output tiles, then the ring (kernels/qconv1x1.cu, out_tiles)."""
        steps = c // _CHANNEL_STEP
        out_tiles = min(self.stages, 1 + -(-(self.stages - 1) // steps))
        return out_tiles * self.bm * (self.bn + 16) + self.stages * (self.bm + self.bn) * (_CHANNEL_STEP + 16)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, k, c = state.layer, state.k, state.c
        x, y = inputs[0], outputs[0]
        z = inputs[4] if len(inputs) > 4 and len(layer.inputs) > 4 and layer.inputs[4] else None
        if x.dtype != np.int8 or x.ndim != 4 or x.shape[3] != c:
            raise ValueError(f"{self.name}: layer {layer.name!r}: input {layer.inputs[0]!r} is {x.dtype}"
                             f"{tuple(x.shape)}, expected int8 NHWC with {c} channels")
        n, h, w = x.shape[:3]
        sh, sw = state.strides
        p, q = (h - 1) // sh + 1, (w - 1) // sw + 1
        if tuple(y.shape) != (n, p, q, k) or y.dtype != np.int8:
            raise ValueError(f"{self.name}: layer {layer.name!r}: output {layer.outputs[0]!r} is {y.dtype}"
                             f"{tuple(y.shape)}, expected int8 {(n, p, q, k)}")
        if z is not None and (z.shape != y.shape or z.dtype != np.int8):
            raise ValueError(f"{self.name}: layer {layer.name!r}: residual {layer.inputs[4]!r} is {z.dtype}"
                             f"{tuple(z.shape)}, expected int8 {tuple(y.shape)}")
        for what, array in (("input", x), ("residual", z), ("output", y)):
            if array is not None and (not array.flags.c_contiguous or array.data.ptr % _ALIGN):
                raise ValueError(f"{self.name}: layer {layer.name!r}: {what} must be C-contiguous NHWC, "
                                 f"{_ALIGN}-byte aligned")
        m = n * p * q
        if m == 0:
            return outputs
        null = np.uint64(0)
        blocks = min(state.blocks, -(-m // self.bm) * (k // self.bn))
        state.kernel((blocks, 1, 1), (self.threads, 1, 1),
                     (x, state.w, state.multiplier, state.bias,
                      z if z is not None else null, y, np.int32(m), np.int32(k), np.int32(c), np.int32(h),
                      np.int32(w), np.int32(p), np.int32(q), np.int32(sh), np.int32(sw),
                      *state.epilogue),
                     shared_mem=state.smem_bytes, stream=stream)
        return outputs


def _resident_blocks(kernel, threads: int, smem_bytes: int) -> int:
    """Blocks of this kernel the whole GPU holds at once (the CUDA occupancy calculator)."""
    from cupy_backends.cuda.api import driver    # cupy's own package: present wherever a kernel is
    cp = cupy()
    per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.kernel.ptr, threads, smem_bytes)
    return max(1, per_sm) * cp.cuda.Device().attributes["MultiProcessorCount"]


for _config in CONFIGS:
    register(QConv1x1(_config))
