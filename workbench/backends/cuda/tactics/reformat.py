"""kernels.reformat_few_channels: the NCHW -> NHWC Reformat of a tensor with 1 to 4 channels (an image
input in front of an NHWC network) as one vectorized kernel (kernels/reformat.cu). cupy.reformat, a
strided copy, moved ResNet-50's 3-channel input at batch 256 in 0.19 ms (~0.4 TB/s, H100), as long
as the network's stem convolution in int8. Other reformats: `supports` says no and cupy.reformat runs
them. Any dtype of 1, 2 or 4 bytes: the kernel moves bits.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic

__all__ = ["ReformatFewChannels"]

_SOURCE = "reformat.cu"
_NCHW_TO_NHWC = [0, 2, 3, 1]
_MOST_CHANNELS = 4
_PIXELS = 4                                 # a thread's pixels: H * W must be a multiple
_ELEMENT = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int"}   # by itemsize: bits, not values
_INSTANCES = tuple(f"nchw_to_nhwc_few<{t}, {c}>" for t in _ELEMENT.values() for c in range(1, _MOST_CHANNELS + 1))
_THREADS = 256
_ALIGN = 16


class ReformatFewChannels(CudaTactic):
    name = "kernels.reformat_few_channels"
    source = "kernels"

    def supports(self, layer: Layer, precision: str) -> bool:
        if layer.op != "Reformat" or layer.domain != "workbench" or layer.attrs.get("perm") != _NCHW_TO_NHWC:
            return False
        shapes, dtypes = layer.output_shapes, layer.output_dtypes
        if not shapes or shapes[0] is None or len(shapes[0]) != 4 or not dtypes:
            return False
        _, h, w, c = shapes[0]
        return (isinstance(c, int) and 1 <= c <= _MOST_CHANNELS and isinstance(h, int) and isinstance(w, int)
                and (h * w) % _PIXELS == 0 and bool(dtypes[0]) and np.dtype(dtypes[0]).itemsize in _ELEMENT)

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> Layer:
        c = layer.output_shapes[0][3]
        itemsize = np.dtype(layer.output_dtypes[0]).itemsize
        return get_kernel(_SOURCE, f"nchw_to_nhwc_few<{_ELEMENT[itemsize]}, {c}>", _INSTANCES), layer

    def run(self, state: Any, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        kernel, layer = state
        x, y = inputs[0], outputs[0]
        n, c, h, w = x.shape
        if (y.shape != (n, h, w, c) or y.dtype != x.dtype or (h * w) % _PIXELS
                or not (x.flags.c_contiguous and y.flags.c_contiguous)
                or x.data.ptr % _ALIGN or y.data.ptr % _ALIGN):
            raise ValueError(f"{self.name}: layer {layer.name!r}: {x.dtype}{tuple(x.shape)} -> {y.dtype}"
                             f"{tuple(y.shape)}; needs contiguous, {_ALIGN}-byte aligned NCHW -> NHWC of one "
                             f"dtype with H * W a multiple of {_PIXELS}")
        groups = n * h * w // _PIXELS
        if groups:
            kernel((-(-groups // _THREADS),), (_THREADS,), (x, y, np.int64(h * w), np.int64(groups)), stream=stream)
        return outputs


register(ReformatFewChannels())
