"""Convolutions as cuBLAS GEMMs on NHWC activations.

"cublas.conv1x1": a 1x1, stride-1, unpadded, ungrouped conv is exactly one GEMM, with no copy at
all: the NHWC input viewed as [N*H*W, C] times the weight as [C, K] is the NHWC output [N*H*W, K].
"cublas.conv_im2col": any ungrouped conv. A kernel (kernels/im2col.cu) gathers the windows into
a column matrix [rows, R*S*C] in a workspace, zero-padded to a multiple of 8 columns so the GEMM
gets aligned rows; one GEMM per workspace-full of output pixels does the rest. The workspace is
bounded (_WORKSPACE_BYTES), so a batch of any size runs in chunks.

Both go through `gemm_into` (tactics/gemm_common.py): cuBLAS with an explicit compute type (fp32
stays fp32, tf32 uses TF32 tensor cores, fp16 accumulates in fp32), then one elementwise kernel
for bias + residual + activation.
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
                                                     is_conv2d_nhwc, kernel_is, launch_1d)
from workbench.backends.cuda.tactics.gemm_common import gemm_into

__all__ = ["Conv1x1Gemm", "Im2colGemm"]

_WORKSPACE_BYTES = 64 << 20     # im2col columns per chunk: big enough that each GEMM fills the GPU
_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float16): "unsigned short"}
_INSTANCES = tuple(f"im2col_nhwc<{t}>" for t in _CTYPE.values())


@dataclasses.dataclass
class _State:
    layer: Layer
    weights: ConvWeights
    b: Any                    # device GEMM B operand [Kcol or Kpad, K]
    bias: Any                 # device float32 [K] or None
    kpad: int = 0             # im2col: columns per row of the workspace
    workspace: Any = None     # im2col: [rows, kpad] in the activation dtype
    kernel: Any = None
    geos: dict = dataclasses.field(default_factory=dict)


def _flat(array, k: int):
    """[N, P, Q, K] NHWC as the [N*P*Q, K] matrix it already is (a view, never a copy)."""
    return None if array is None else array.reshape(-1, k)


class Conv1x1Gemm(CudaTactic):
    name = "cublas.conv1x1"
    source = "cublas"

    def supports(self, layer: Layer, precision: str) -> bool:
        if not is_conv2d_nhwc(layer, precision) or not kernel_is(layer, (1, 1)):
            return False
        attrs = layer.attrs
        return (int(attrs.get("group", 1)) == 1 and all(v == 1 for v in attrs.get("strides") or [1])
                and ((attrs.get("auto_pad") or "NOTSET") != "NOTSET" or not any(attrs.get("pads") or [0])))

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cw = conv_weights(layer, weights, self.name)
        if cw.w.shape[2:] != (1, 1) or cw.group != 1:
            raise ValueError(f"{self.name}: layer {layer.name!r}: weight {cw.w.shape} group {cw.group} is not a "
                             f"1x1 ungrouped conv")
        cp = cupy()
        b = cp.asarray(np.ascontiguousarray(cw.w[:, :, 0, 0].T))               # [C, K]
        return _State(layer, cw, b, None if cw.bias is None else cp.asarray(cw.bias))

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, cw, x, z, y, geo = conv_operands(self.name, state, inputs, outputs)
        if (geo.p, geo.q) != (geo.h, geo.w):
            raise ValueError(f"{self.name}: layer {layer.name!r}: output {geo.p}x{geo.q} differs from input "
                             f"{geo.h}x{geo.w}: not a plain 1x1 conv")
        check_arrays(self.name, layer, cw, x, z, y)
        if geo.rows:
            gemm_into(x.reshape(-1, geo.c), state.b, _flat(y, geo.k), precision=layer.precision, bias=state.bias,
                      residual=_flat(z, geo.k), activation=cw.activation, stream=stream)
        return outputs


class Im2colGemm(CudaTactic):
    name = "cublas.conv_im2col"
    source = "cublas"

    def supports(self, layer: Layer, precision: str) -> bool:
        return is_conv2d_nhwc(layer, precision) and int(layer.attrs.get("group", 1)) == 1

    def workspace_bytes(self, layer: Layer) -> int:
        return _WORKSPACE_BYTES

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cw = conv_weights(layer, weights, self.name)
        if cw.group != 1:
            raise ValueError(f"{self.name}: layer {layer.name!r} has group {cw.group}; im2col + GEMM runs group 1")
        cp = cupy()
        k, c, r, s = cw.w.shape
        kcol = r * s * c
        kpad = -(-kcol // 8) * 8
        b = np.zeros((kpad, k), cw.dtype)
        b[:kcol] = cw.w.transpose(2, 3, 1, 0).reshape(kcol, k)                 # row (r*S + s)*C + c
        state = _State(layer, cw, cp.asarray(b), None if cw.bias is None else cp.asarray(cw.bias), kpad,
                       kernel=get_kernel("im2col.cu", f"im2col_nhwc<{_CTYPE[cw.dtype]}>", _INSTANCES))
        shape = layer.output_shapes[0] if layer.output_shapes else None
        if shape is not None and all(isinstance(d, int) for d in shape):
            state.workspace = self._workspace(state, int(np.prod(shape[:3])))
        return state

    def _workspace(self, state: _State, rows: int):
        """Room for `rows` output pixels' columns, capped at _WORKSPACE_BYTES (the GEMM then chunks)."""
        itemsize = state.weights.dtype.itemsize
        cap = max(1, _WORKSPACE_BYTES // (state.kpad * itemsize))
        return cupy().empty((max(1, min(rows, cap)), state.kpad), state.weights.dtype)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        layer, cw, x, z, y, geo = conv_operands(self.name, state, inputs, outputs)
        check_arrays(self.name, layer, cw, x, z, y)
        if state.workspace is None:               # output shape unknown at prepare: the warm-up run sizes it
            state.workspace = self._workspace(state, geo.rows)
        y2, z2 = _flat(y, geo.k), _flat(z, geo.k)
        i32 = np.int32
        kcol = geo.r * geo.s * geo.c
        chunk = state.workspace.shape[0]
        for m0 in range(0, geo.rows, chunk):
            rows = min(chunk, geo.rows - m0)
            col = state.workspace[:rows]
            launch_1d(state.kernel, rows * state.kpad,
                      (x, col, np.int64(m0), i32(rows), i32(geo.h), i32(geo.w), i32(geo.c), i32(geo.p), i32(geo.q),
                       i32(geo.r), i32(geo.s), i32(geo.stride_h), i32(geo.stride_w), i32(geo.pad_top),
                       i32(geo.pad_left), i32(geo.dil_h), i32(geo.dil_w), i32(kcol), i32(state.kpad)))
            gemm_into(col, state.b, y2[m0:m0 + rows], precision=layer.precision, bias=state.bias,
                      residual=None if z2 is None else z2[m0:m0 + rows], activation=cw.activation, stream=stream)
        return outputs


register(Conv1x1Gemm())
register(Im2colGemm())
