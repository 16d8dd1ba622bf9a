"""CPU kernel of workbench::RoundTF32, the layer that makes TF32 math visible in an engine.

Tensor cores in TF32 mode read float32 operands with only 10 of their 23 mantissa bits. The
builder inserts RoundTF32 in front of the activation operands of Conv/MatMul/Gemm layers of
precision "tf32" (weights are rounded once at build time with the same function), so the
float32/float64 accumulation that follows sees exactly the operands a tensor core sees:

    tf32(x) = bits(x) rounded to a multiple of 2**13, round to nearest, ties to even
            = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF        (NaN kept as it is)

Carries propagate into the exponent, so the largest finite values round up to infinity, as an
IEEE rounding to a 10-bit mantissa must.
"""
from __future__ import annotations

import numpy as np

from workbench.backends.cpu.registry import kernel

__all__ = ["round_to_tf32"]

_DROPPED = 13                                      # 23 float32 mantissa bits - 10 TF32 bits
_KEEP_MASK = np.uint32(0xFFFFFFFF ^ ((1 << _DROPPED) - 1))
_HALF_MINUS_ONE = np.uint32((1 << (_DROPPED - 1)) - 1)


def round_to_tf32(x: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 precision (10 mantissa bits, ties to even); returns float32.

    Example:
        >>> round_to_tf32(np.float32(1 + 2**-11))      # halfway between 1 and 1 + 2**-10: to even
        array(1., dtype=float32)
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"round_to_tf32 rounds float32 values, got {x.dtype.name}")
    bits = x.view(np.uint32)
    lsb = (bits >> np.uint32(_DROPPED)) & np.uint32(1)
    with np.errstate(over="ignore"):
        rounded = (bits + _HALF_MINUS_ONE + lsb) & _KEEP_MASK
    return np.where(np.isnan(x), bits, rounded).view(np.float32)


@kernel("RoundTF32", domain="workbench")
def round_tf32(inputs, attrs, node):
    return round_to_tf32(inputs[0])
