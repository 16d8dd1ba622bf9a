"""kernels.gemm_tc_<BM>x<BN>x<BK>: our tensor-core GEMM (kernels/gemm_tc.cu) with the whole epilogue
fused: alpha, bias [N], residual [M, N], activation, cast to the output dtype; one kernel a layer.

fp16 layers only (fp16 operands, fp32 accumulation; the output may be fp16 or fp32). B must be a
constant weight: `prepare` lays it out as Bt[N, K] and folds Gemm's beta into an fp32 bias. A
may be N-D (its leading dims fold into M) and must be C-contiguous with 16-byte aligned rows,
hence K % 8 == 0; M and N are free (partial tiles are guarded). What `supports` cannot see
without the weights (B or C not constant, K % 8) makes `prepare` raise, which the autotuner
reports as a refused tactic.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.backends.base import Layer
from workbench.backends.cuda.compile import get_kernel, instance
from workbench.backends.cuda.device import cupy
from workbench.backends.cuda.registry import register
from workbench.backends.cuda.tactic import CudaTactic
from workbench.backends.cuda.tactics.gemm_common import GemmSpec, gemm_spec, is_gemm_layer

SOURCE = "gemm_tc.cu"
# (BM, BN, BK, warps along M, warps along N, pipeline stages): 64x64 warp tiles keep shared-memory
# traffic per mma low; the smaller blocks give small problems enough blocks to fill 132 SMs
CONFIGS = ((128, 128, 32, 2, 2, 4), (128, 128, 64, 2, 2, 3), (128, 64, 32, 2, 2, 4), (64, 64, 64, 2, 2, 3))
_SMEM_DEFAULT_LIMIT = 48 * 1024          # more needs the kernel's opt-in attribute
_ALIGN = 16


_ALL = tuple(instance("gemm_tc", *c) for c in CONFIGS)


@dataclasses.dataclass
class _State:
    spec: GemmSpec
    kernel: Any
    weight_t: Any                 # device [N, K] float16, C-contiguous
    bias: Any                     # device [N] float32 (beta already folded in) or None
    n: int
    k: int


class TensorCoreGemm(CudaTactic):
    source = "kernels"

    def __init__(self, config):
        self.config = config
        self.bm, self.bn, self.bk, warps_m, warps_n, stages = config
        self.threads = 32 * warps_m * warps_n
        self.smem_bytes = stages * (self.bm + self.bn) * (self.bk + 8) * 2
        self.name = f"kernels.gemm_tc_{self.bm}x{self.bn}x{self.bk}"

    def supports(self, layer: Layer, precision: str) -> bool:
        if precision != "fp16" or not is_gemm_layer(layer):
            return False
        try:
            spec = gemm_spec(layer)
        except ValueError:
            return False
        return not spec.trans_a

    def prepare(self, layer: Layer, weights: dict[str, np.ndarray]) -> _State:
        cp = cupy()
        spec = gemm_spec(layer)
        b_name = layer.inputs[1]
        if b_name not in weights:
            raise ValueError(f"{self.name}: layer {layer.name!r} multiplies by {b_name!r}, which is not a "
                             "constant weight (this kernel needs B laid out at build time)")
        b = np.asarray(weights[b_name])
        if b.ndim != 2:
            raise ValueError(f"{self.name}: layer {layer.name!r} weight {b_name!r} has shape {b.shape}, expected 2-D")
        weight_t = b if spec.trans_b else b.T                   # -> [N, K]
        n, k = weight_t.shape
        if k % 8:
            raise ValueError(f"{self.name}: layer {layer.name!r} has K={k}; this kernel needs K % 8 == 0 "
                             "(16-byte rows for cp.async)")
        bias = None
        if spec.c_index is not None:
            c_name = layer.inputs[spec.c_index]
            c = weights.get(c_name)
            if c is None or np.asarray(c).size != n or (np.ndim(c) == 2 and np.shape(c)[0] != 1):
                raise ValueError(f"{self.name}: layer {layer.name!r} adds {c_name!r}; this kernel takes only a "
                                 f"constant bias of N={n} values")
            bias = cp.asarray(np.asarray(c, np.float32).reshape(n) * np.float32(spec.bias_scale))
        kernel = get_kernel(SOURCE, instance("gemm_tc", *self.config), _ALL)
        if self.smem_bytes > _SMEM_DEFAULT_LIMIT:
            kernel.max_dynamic_shared_size_bytes = self.smem_bytes
        return _State(spec, kernel, cp.ascontiguousarray(cp.asarray(weight_t, dtype=cp.float16)), bias, n, k)

    def run(self, state: _State, inputs: Sequence[Any], outputs: Sequence[Any], stream: Any) -> Sequence[Any]:
        a, out = inputs[0], outputs[0]
        z = inputs[state.spec.z_index] if state.spec.z_index is not None else None
        n, k = state.n, state.k
        if a.dtype != np.float16 or a.shape[-1] != k or not a.flags.c_contiguous:
            raise ValueError(f"{self.name}: A must be C-contiguous float16 [..., {k}], got {a.dtype} {a.shape}")
        m = a.size // k
        if out.size != m * n or out.shape[-1] != n or out.dtype not in (np.float16, np.float32):
            raise ValueError(f"{self.name}: output {out.dtype} {out.shape} does not hold [{m}, {n}] fp16/fp32")
        if z is not None and (z.shape != out.shape or z.dtype != out.dtype or not z.flags.c_contiguous):
            raise ValueError(f"{self.name}: residual must be C-contiguous {out.dtype} {out.shape}, "
                             f"got {z.dtype} {z.shape}")
        for what, array in (("A", a), ("output", out), ("residual", z)):
            if array is not None and array.data.ptr % _ALIGN:
                raise ValueError(f"{self.name}: {what} is not {_ALIGN}-byte aligned")
        if m == 0 or n == 0:
            return outputs
        code, p0, p1 = state.spec.activation
        null = np.uint64(0)
        grid = ((n + self.bn - 1) // self.bn, (m + self.bm - 1) // self.bm, 1)
        state.kernel(grid, (self.threads, 1, 1),
                     (a, state.weight_t, state.bias if state.bias is not None else null,
                      z if z is not None else null, out, np.int32(m), np.int32(n), np.int32(k),
                      np.float32(state.spec.alpha), np.int32(code), np.float32(p0), np.float32(p1),
                      np.int32(out.dtype == np.float32)),
                     shared_mem=self.smem_bytes, stream=stream)
        return outputs


for _config in CONFIGS:
    register(TensorCoreGemm(_config))
