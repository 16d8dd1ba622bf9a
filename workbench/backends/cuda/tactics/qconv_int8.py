"""What our int8 FusedQConv kernels with the requantizing epilogue (kernels/qconv_igemm.cu,
kernels/qconv_rows.cu; int8_mma.cuh requantize_pair) share on the host: the layers they take, the
epilogue's device constants, the run-time checks on the arrays, and the persistent grid's size."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from onnx import TensorProto

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.epilogue import INT8_ACTIVATIONS, activation_of, int8_clamp
from workbench.backends.cuda.tactics.conv_spec import check_output, geometry, is_conv2d_nhwc

__all__ = ["takes_int8_layer", "epilogue_constants", "run_arrays", "resident_blocks"]

_FINITE = 1e30                           # |multiplier|, |bias|, |residual scale| below this: no inf, no NaN
_ALIGN = 16                              # the kernels move 16-byte chunks


def takes_int8_layer(layer: Layer, precision: str) -> bool:
    """An int8 NHWC convolution, group 1, no dilation, int8 output, an activation the epilogue has."""
    attrs = layer.attrs
    return (is_conv2d_nhwc(layer, precision, ("int8",)) and activation_of(layer)[0] in INT8_ACTIVATIONS
            and all(v == 1 for v in attrs.get("dilations") or [1])
            and int(attrs.get("group", 1)) == 1
            and attrs.get("output_dtype", TensorProto.INT8) == TensorProto.INT8)


def epilogue_constants(tactic: str, layer: Layer, host_m: np.ndarray, host_b: np.ndarray | None) -> tuple:
    """(multiplier, bias, epilogue): the device float32 [K] multiplier and bias (zeros for a layer without:
    adding +0 changes no int8 result) and the kernel's last arguments (residual scale, leaky, alpha, lo, hi).
    Refuses non-finite or huge parameters: the kernels' clamp-then-round has no NaN path."""
    residual_scale = np.float32(layer.attrs.get("residual_scale", 1.0))
    for what, values in (("multiplier", host_m), ("bias", host_b), ("residual_scale", residual_scale)):
        if values is not None and not np.all(np.abs(values) < _FINITE):
            raise ValueError(f"{tactic}: layer {layer.name!r}: {what} has values that are not finite or "
                             f"beyond {_FINITE:g}; cuDNN runs this layer")
    cp = cupy()
    bias = np.zeros(host_m.shape, np.float32) if host_b is None else host_b
    return cp.asarray(host_m), cp.asarray(bias), (residual_scale, *int8_clamp(layer))


def run_arrays(tactic: str, state: Any, inputs: Sequence[Any], outputs: Sequence[Any]) -> tuple:
    """(x, z, y, geometry) of a run: the input, the residual (input 4) or None, the output, checked
    (_check_arrays) and the output's shape against the convolution's geometry. `state` has the
    layer, its ConvWeights (`weights`) and a geometry cache (`geos`)."""
    layer = state.layer
    x, y = inputs[0], outputs[0]
    z = inputs[4] if len(inputs) > 4 and len(layer.inputs) > 4 and layer.inputs[4] else None
    _check_arrays(tactic, layer, x, z, y)
    geo = geometry(layer, state.weights, x.shape, state.geos)
    check_output(layer, geo, y, tactic)
    return x, z, y, geo


def _check_arrays(tactic: str, layer: Layer, x, z, y) -> None:
    """int8 input, output and residual (shaped as the output), C-contiguous and 16-byte aligned."""
    if x.dtype != np.int8 or y.dtype != np.int8:
        raise ValueError(f"{tactic}: layer {layer.name!r}: input {layer.inputs[0]!r} is {x.dtype}, output "
                         f"{layer.outputs[0]!r} {y.dtype}; this kernel is int8 in and out")
    if z is not None and (z.shape != y.shape or z.dtype != np.int8):
        raise ValueError(f"{tactic}: layer {layer.name!r}: residual {layer.inputs[4]!r} is {z.dtype}"
                         f"{tuple(z.shape)}, expected int8 {tuple(y.shape)}")
    for what, array in (("input", x), ("residual", z), ("output", y)):
        if array is not None and (not array.flags.c_contiguous or array.data.ptr % _ALIGN):
            raise ValueError(f"{tactic}: layer {layer.name!r}: {what} must be C-contiguous NHWC, "
                             f"{_ALIGN}-byte aligned")


def resident_blocks(kernel, threads: int, smem_bytes: int) -> int:
    """Blocks of this kernel the whole GPU holds at once (the CUDA occupancy calculator)."""
    from cupy_backends.cuda.api import driver    # cupy's own package: present wherever a kernel is
    per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.kernel.ptr, threads, smem_bytes)
    return max(1, per_sm) * cupy().cuda.Device().attributes["MultiProcessorCount"]
