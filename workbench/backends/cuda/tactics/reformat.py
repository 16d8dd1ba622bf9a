"""kernels.reformat_few_channels: the NCHW -> NHWC Reformat of a tensor with 1 to 4 channels (an image
input in front of an NHWC network) as one vectorized kernel (kernels/reformat.cu). cupy.reformat, a
strided copy, moved ResNet-50's 3-channel input at batch 256 in 0.19 ms (~0.4 TB/s, H100), as long
as the network's stem convolution in int8. Other reformats: `supports` says no and cupy.reformat runs
them. Any dtype of 1, 2 or 4 bytes: the kernel moves bits.

A quantizing Reformat (inputs X, y_scale, y_zero_point: the builder folds the engine input's
QuantizeLinear into it, builder/layout.py) runs the same pixel moves as `quantize_nchw_to_nhwc_few`:
float32 in, int8 out, one pass instead of a quantize pass and a reformat pass.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic

__all__ = ["ReformatFewChannels", "quantizes"]

_SOURCE = "reformat.cu"
_NCHW_TO_NHWC = [0, 2, 3, 1]
_MOST_CHANNELS = 4
_PIXELS = 4                                 # a thread's pixels: H * W must be a multiple
_ELEMENT = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int"}   # by itemsize: bits, not values
_INSTANCES = tuple(f"nchw_to_nhwc_few<{t}, {c}>" for t in _ELEMENT.values() for c in range(1, _MOST_CHANNELS + 1)) \
    + tuple(f"quantize_nchw_to_nhwc_few<{c}>" for c in range(1, _MOST_CHANNELS + 1))
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
        dtype_ok = dtypes[0] == "int8" if quantizes(layer) else bool(dtypes[0]) and np.dtype(dtypes[0]).itemsize in _ELEMENT
        return (isinstance(c, int) and 1 <= c <= _MOST_CHANNELS and isinstance(h, int) and isinstance(w, int)
                and (h * w) % _PIXELS == 0 and dtype_ok)

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]):
        c = layer.output_shapes[0][3]
        if not quantizes(layer):
            itemsize = np.dtype(layer.output_dtypes[0]).itemsize
            return get_kernel(_SOURCE, f"nchw_to_nhwc_few<{_ELEMENT[itemsize]}, {c}>", _INSTANCES), layer, ()
        scale, zero_point = (np.asarray(weights[n]) for n in layer.inputs[1:3])
        if scale.size != 1 or scale.dtype != np.float32 or zero_point.size != 1 or zero_point.dtype != np.int8:
            raise ValueError(f"{self.name}: layer {layer.name!r}: quantizes with a float32 scale and an int8 zero "
                             f"point, one each; got {scale.dtype}{scale.shape}, {zero_point.dtype}{zero_point.shape}")
        cp = cupy()
        kernel = get_kernel(_SOURCE, f"quantize_nchw_to_nhwc_few<{c}>", _INSTANCES)
        return kernel, layer, (cp.asarray(scale.reshape(1)), cp.asarray(zero_point.reshape(1)))

    def run(self, state: Any, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        kernel, layer, quantization = state
        x, y = inputs[0], outputs[0]
        n, c, h, w = x.shape
        want = np.dtype(np.float32) if quantization else y.dtype
        if (y.shape != (n, h, w, c) or x.dtype != want or (h * w) % _PIXELS
                or not (x.flags.c_contiguous and y.flags.c_contiguous)
                or x.data.ptr % _ALIGN or y.data.ptr % _ALIGN):
            raise ValueError(f"{self.name}: layer {layer.name!r}: {x.dtype}{tuple(x.shape)} -> {y.dtype}"
                             f"{tuple(y.shape)}; needs contiguous, {_ALIGN}-byte aligned NCHW -> NHWC "
                             f"({'float32 to int8' if quantization else 'of one dtype'}) with H * W a multiple "
                             f"of {_PIXELS}")
        groups = n * h * w // _PIXELS
        if groups:
            kernel((-(-groups // _THREADS),), (_THREADS,), (x, *quantization, y, np.int64(h * w), np.int64(groups)),
                   stream=stream)
        return outputs


def quantizes(layer: Layer) -> bool:
    """A Reformat with y_scale and y_zero_point inputs quantizes as it moves (builder/layout.py): no
    copy or view tactic runs it."""
    return len(layer.inputs) > 2 and bool(layer.inputs[1]) and bool(layer.inputs[2])


register(ReformatFewChannels())
