"""Errors of the quantization toolkit. Each names the thing that is wrong (the file, the tensor, the
shape, the sample) so a calibration run of 1000 samples never ends in a bare numpy traceback."""
from __future__ import annotations

from workbench.errors import WorkbenchError

__all__ = ["CalibrationError", "SparsityError", "QuantizationError"]


class CalibrationError(WorkbenchError):
    """Calibration cannot run or its table cannot be used: empty data, a sample that is not a feed
    dict, a tensor the model did not produce, or a cached table of another model (hash mismatch)."""


class SparsityError(WorkbenchError, ValueError):
    """A weight cannot carry the 2:4 pattern: its reduction length is not a multiple of 4.

    Attributes:
        shape: the weight's shape.
        reduction_len: the length of the dimension the groups of 4 run along.
    """

    def __init__(self, message: str, shape: tuple[int, ...], reduction_len: int):
        super().__init__(message)
        self.shape = tuple(shape)
        self.reduction_len = reduction_len


class QuantizationError(WorkbenchError, ValueError):
    """Integer numerics went out of range (an int32 accumulator overflow) or got unusable
    arguments (a non-positive scale, integer inputs of the wrong type)."""
