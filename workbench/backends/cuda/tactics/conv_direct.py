"""Direct convolutions (kernels/conv_direct.cu): the tactics that run every Conv correctly.

"kernels.conv_depthwise" runs group == C == K (MobileNet's depthwise layers); "kernels.conv_grouped"
runs any group count and any channel count (ResNet's 3-channel first conv, odd channels), in
fp32/tf32 (fp32 math) and fp16 (fp32 accumulate), with the fused bias + residual + activation
epilogue. They are not fast on big dense layers (no tensor cores, no data reuse through shared
memory); the tensor-core and library tactics win there, and these stay the fallback the autotuner
can always choose.
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
                                                     is_conv2d_nhwc, known_out_channels, launch_1d)

__all__ = ["DirectConv"]

_FILE = "conv_direct.cu"
_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float16): "unsigned short"}
_KPTS = (8, 4, 2, 1)
_INSTANCES = tuple([f"conv_grouped<{t},{kpt}>" for t in _CTYPE.values() for kpt in _KPTS]
                   + [f"conv_depthwise<{t}>" for t in _CTYPE.values()])


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: ConvWeights
    w: Any                 # device weights in the kernel's layout
    bias: Any              # device float32 [K] or None
    kernel: Any
    kpt: int = 1           # output channels per thread (conv_grouped)
    geos: dict = dataclasses.field(default_factory=dict)


class DirectConv(CudaTactic):
    """One direct kernel family: `depthwise` (group == C == K) or grouped (anything)."""
    source = "kernels"

    def __init__(self, depthwise: bool):
        self.depthwise = depthwise
        self.name = "kernels.conv_depthwise" if depthwise else "kernels.conv_grouped"

    def supports(self, layer: Layer, precision: str) -> bool:
        if not is_conv2d_nhwc(layer, precision):
            return False
        if not self.depthwise:
            return True
        group = int(layer.attrs.get("group", 1))
        # group == K here (the builder knows K from shape inference; unknown K goes to conv_grouped);
        # C == group, one input channel per group, is checked in prepare where the weight says C
        return group > 1 and known_out_channels(layer) == group

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cw = conv_weights(layer, weights, self.name)
        ctype = _CTYPE[cw.dtype]
        k, cg, r, s = cw.w.shape
        kpt = 1
        if self.depthwise and not (cw.group == k and cg == 1):
            raise ValueError(f"{self.name}: layer {layer.name!r} is not depthwise (group {cw.group}, weight "
                             f"{cw.w.shape}): needs group == C == K")
        cp = cupy()
        if self.depthwise:
            w_dev = cp.asarray(np.ascontiguousarray(cw.w[:, 0].transpose(1, 2, 0)))        # [R][S][C]
            name = f"conv_depthwise<{ctype}>"
        else:
            g, kg = cw.group, k // cw.group
            w_dev = cp.asarray(np.ascontiguousarray(                                        # [G][R][S][Cg][Kg]
                cw.w.reshape(g, kg, cg, r, s).transpose(0, 3, 4, 2, 1)))
            kpt = next(v for v in _KPTS if kg % v == 0)
            name = f"conv_grouped<{ctype},{kpt}>"
        bias = None if cw.bias is None else cp.asarray(cw.bias)
        return _State(layer, cw, w_dev, bias, get_kernel(_FILE, name, _INSTANCES), kpt)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, cw, x, z, y, geo = conv_operands(self.name, state, inputs, outputs)
        code, p0, p1 = cw.activation
        i32, f32 = np.int32, np.float32
        tail = (i32(geo.stride_h), i32(geo.stride_w), i32(geo.pad_top), i32(geo.pad_left), i32(geo.dil_h),
                i32(geo.dil_w), i32(code), f32(p0), f32(p1))
        if self.depthwise:
            args = (x, state.w, state.bias, z, y, i32(geo.n), i32(geo.h), i32(geo.w), i32(geo.c), i32(geo.p),
                    i32(geo.q), i32(geo.r), i32(geo.s)) + tail
            total = geo.rows * geo.k
        else:
            args = (x, state.w, state.bias, z, y, i32(geo.n), i32(geo.h), i32(geo.w), i32(geo.c), i32(geo.k),
                    i32(geo.p), i32(geo.q), i32(geo.r), i32(geo.s), i32(geo.group)) + tail
            total = geo.rows * (geo.k // state.kpt)
        check_arrays(self.name, layer, cw, x, z, y)
        launch_1d(state.kernel, total, args)
        return outputs


register(DirectConv(depthwise=True))
register(DirectConv(depthwise=False))
