"""2:4 structured sparsity: magnitude pruning and checks (NVIDIA Ampere+ sparse tensor cores).

Why: a sparse tensor core multiplies a matrix in which every group of 4 consecutive elements along the
reduction (K) dimension holds at most 2 nonzeros; it stores only the 2 values plus 2-bit indices and
skips half the multiply-adds. The weights must carry the pattern before the build, so we prune by
magnitude: in each group of 4 keep the 2 largest |w| (ties: the lower index), zero the other 2.

Which axis is the reduction (`axis`, default -1):
    Gemm  weight [N, K] (transB=1, the PyTorch Linear layout)  -> axis=-1 (K)
    MatMul B     [K, N]                                         -> axis=0  (K)
    Conv  weight [O, I, kh, kw]: more than 2 dims are first viewed as the matrix [O, I*kh*kw], the A
          operand of the im2col GEMM, whose K runs over (i, kh, kw) in memory order; then axis=-1.
TensorRT's documented check for convolutions groups input channels instead, at every (o, kh, kw)
(its kernels read weights as KRSC); to get that pattern prune `w.transpose(0, 2, 3, 1)` and transpose
back. A reduction length that is not a multiple of 4 raises SparsityError (the caller skips the layer).

    >>> pruned, mask = prune_2to4(np.array([[1., -4., 3., 2., 0., 5., 5., -5.]]))
    >>> pruned.tolist()
    [[0.0, -4.0, 3.0, 0.0, 0.0, 5.0, 5.0, 0.0]]
"""
from __future__ import annotations

import numpy as np

from workbench.quant.errors import SparsityError

__all__ = ["prune_2to4", "is_2to4", "sparsity_report", "reduction_length"]


def _as_groups(w: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """View w as [..., K/4, 4] with K the reduction axis moved last; returns (groups, axis used)."""
    m = w.reshape(w.shape[0], -1) if w.ndim > 2 else w
    if m.ndim == 0:
        raise SparsityError("2:4 sparsity needs a weight with at least 1 dimension, got a scalar", (), 0)
    axis = axis % m.ndim
    k = m.shape[axis]
    if k % 4:
        raise SparsityError(f"2:4 sparsity: weight of shape {tuple(w.shape)} has reduction length {k} "
                            f"(axis {axis}{' of the [O, I*kh*kw] view' if w.ndim > 2 else ''}), "
                            f"not a multiple of 4", w.shape, k)
    moved = np.moveaxis(m, axis, -1)
    return moved.reshape(*moved.shape[:-1], k // 4, 4), axis


def _from_groups(groups: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    m_shape = (w.shape[0], int(np.prod(w.shape[1:]))) if w.ndim > 2 else w.shape
    moved = groups.reshape(*groups.shape[:-2], -1)
    return np.moveaxis(moved, -1, axis).reshape(m_shape).reshape(w.shape)


def reduction_length(w, axis: int = -1) -> int:
    """The length the groups of 4 run along: I*kh*kw for Conv weights, shape[axis] for 2-D ones."""
    shape = np.shape(w)
    if len(shape) > 2:
        return int(np.prod(shape[1:]))
    return int(shape[axis]) if shape else 0


def prune_2to4(w, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Keep the 2 largest-magnitude weights of every 4 consecutive along the reduction axis.

    Returns:
        (pruned, mask): pruned has w's dtype and shape; mask is bool, True where a weight is kept.
    Raises:
        SparsityError: the reduction length is not a multiple of 4 (names the shape).
    """
    w = np.asarray(w)
    groups, ax = _as_groups(w, axis)
    order = np.argsort(-np.abs(groups), axis=-1, kind="stable")      # stable: ties keep the lower index
    keep = np.zeros(groups.shape, bool)
    np.put_along_axis(keep, order[..., :2], True, axis=-1)
    mask = _from_groups(keep, w, ax)
    return np.where(mask, w, np.zeros((), w.dtype)), mask


def is_2to4(w, axis: int = -1) -> bool:
    """True when every group of 4 along the reduction axis has at most 2 nonzeros.

    A weight whose reduction length is not a multiple of 4 cannot run on sparse tensor cores: False.
    """
    w = np.asarray(w)
    try:
        groups, _ = _as_groups(w, axis)
    except SparsityError:
        return False
    return bool(np.all(np.count_nonzero(groups, axis=-1) <= 2))


def sparsity_report(weights: dict[str, np.ndarray], axis: int | dict[str, int] = -1):
    """One row per weight: name, shape, reduction_len, eligible, is_2to4, density (a pandas DataFrame).

    `axis` is the reduction axis for all weights, or a dict name -> axis (missing names use -1).
    """
    import pandas as pd
    rows = []
    for name, w in weights.items():
        w = np.asarray(w)
        ax = axis.get(name, -1) if isinstance(axis, dict) else axis
        k = reduction_length(w, ax)
        rows.append({"name": name, "shape": tuple(w.shape), "reduction_len": k,
                     "eligible": w.ndim > 0 and k > 0 and k % 4 == 0, "is_2to4": is_2to4(w, ax),
                     "density": float(np.count_nonzero(w) / w.size) if w.size else 0.0})
    return pd.DataFrame(rows, columns=["name", "shape", "reduction_len", "eligible", "is_2to4", "density"])
