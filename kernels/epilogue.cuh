// Activation epilogues shared by our GEMM and convolution kernels. The numbers match the CPU
// oracle's kernels (workbench/backends/cpu/ops/activation.py) evaluated in float32.
#pragma once

// activation codes, in the order of workbench.backends.cuda.epilogue.ACTIVATION_CODES
#define WB_ACT_NONE 0
#define WB_ACT_RELU 1
#define WB_ACT_CLIP 2
#define WB_ACT_LEAKYRELU 3
#define WB_ACT_SIGMOID 4
#define WB_ACT_TANH 5
#define WB_ACT_SILU 6
#define WB_ACT_HARDSWISH 7
#define WB_ACT_GELU_ERF 8
#define WB_ACT_GELU_TANH 9

__device__ __forceinline__ float wb_activate(float x, int act, float p0, float p1) {
    switch (act) {
    case WB_ACT_RELU: return fmaxf(x, 0.f);
    case WB_ACT_CLIP: return fminf(fmaxf(x, p0), p1);
    case WB_ACT_LEAKYRELU: return x >= 0.f ? x : x * p0;
    case WB_ACT_SIGMOID: return 1.f / (1.f + __expf(-x));
    case WB_ACT_TANH: return tanhf(x);
    case WB_ACT_SILU: return x / (1.f + __expf(-x));
    case WB_ACT_HARDSWISH: return x * fminf(fmaxf(x + 3.f, 0.f), 6.f) * (1.f / 6.f);
    case WB_ACT_GELU_ERF: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case WB_ACT_GELU_TANH: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    default: return x;
    }
}
