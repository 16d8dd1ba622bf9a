"""cublas.gemm: MatMul, Gemm and workbench::FusedGemm through cuBLAS (cublasGemmEx, strided batched
for N-D MatMul), then one CuPy elementwise kernel for the epilogue (bias, residual, activation).

It runs every GEMM layer the CUDA backend sees (B a weight or an activation, transposes, N-D
batches with broadcasting, any K and N), so it is the tactic the others are measured against.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import DTYPES, CudaTactic
from workbench.backends.cuda.tactics.gemm_common import GemmSpec, apply_epilogue, gemm_spec, is_gemm_layer, matmul_into


@dataclasses.dataclass
class _State:
    spec: GemmSpec
    precision: str
    constants: dict          # input index -> device array of a weight (uploaded once, in the layer's dtype)


class CublasGemm(CudaTactic):
    name = "cublas.gemm"
    source = "cublas"

    def supports(self, layer: Layer, precision: str) -> bool:
        if not is_gemm_layer(layer) or precision not in DTYPES:
            return False
        try:
            gemm_spec(layer)
        except ValueError:                       # an activation with no GPU epilogue
            return False
        return True

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cp = cupy()
        spec = gemm_spec(layer)
        dtype = DTYPES[layer.precision]
        constants = {}
        for index, name in enumerate(layer.inputs):
            if name and name in weights:
                value = np.asarray(weights[name])
                constants[index] = cp.asarray(value.astype(dtype, copy=False) if value.dtype.kind == "f" else value)
        return _State(spec, layer.precision, constants)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        spec, out = state.spec, outputs[0]
        a, b, c, z = (state.constants.get(i, inputs[i] if i is not None and i < len(inputs) else None)
                      for i in (0, 1, spec.c_index, spec.z_index))
        if spec.trans_a:
            a = a.T
        if spec.trans_b:
            b = b.T
        if not spec.nd and (a.ndim != 2 or b.ndim != 2):
            raise ValueError(f"Gemm takes 2-D operands, got A{a.shape} and B{b.shape}")
        a2, b2, out2 = _promote_vectors(a, b, out)
        matmul_into(a2, b2, out2, precision=state.precision, alpha=spec.alpha)
        apply_epilogue(out, c if spec.c_index is not None else None, z, spec.activation, spec.bias_scale)
        return outputs


def _promote_vectors(a, b, out):
    """NumPy matmul's 1-D rules: a [K] is a row [1, K], b [K] a column [K, 1]; the output is viewed
    with the dims it lacks (views only: the output is C-contiguous)."""
    if a.ndim == 1:
        a = a.reshape(1, -1)
        out = out.reshape(out.shape[:-1] + (1, out.shape[-1])) if b.ndim > 1 else out
    if b.ndim == 1:
        b = b.reshape(-1, 1)
        out = out.reshape(out.shape + (1,))
    if a.ndim == 2 and b.ndim == 2 and out.ndim != 2:
        out = out.reshape(a.shape[0], b.shape[1])
    return a, b, out


register(CublasGemm())
