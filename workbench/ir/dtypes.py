"""Mapping between ONNX element types and numpy dtypes (bfloat16 and float8 via ml_dtypes)."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

__all__ = ["np_dtype", "onnx_elem_type", "dtype_name"]


def np_dtype(elem_type: int | ir.DataType) -> np.dtype:
    """Numpy dtype for an ONNX TensorProto element type (int) or onnx_ir DataType."""
    if isinstance(elem_type, ir.DataType):
        return np.dtype(elem_type.numpy())
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(elem_type)))


def onnx_elem_type(dtype: np.dtype) -> int:
    return int(ir.DataType.from_numpy(np.dtype(dtype)))


def dtype_name(dtype: np.dtype | None) -> str:
    """Stable string name for a dtype, used in plan manifests and error messages."""
    return "unknown" if dtype is None else np.dtype(dtype).name
