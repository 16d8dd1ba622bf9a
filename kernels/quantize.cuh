// The rounding QuantizeLinear does, bit-exact with the CPU oracle (workbench/backends/cpu/ops/quantize.py),
// shared by kernels/quantize.cu and the quantizing reformat (kernels/reformat.cu).
#pragma once
#include <cuda_fp16.h>

template <typename T> __device__ __forceinline__ float wb_float(T v) { return static_cast<float>(v); }
template <> __device__ __forceinline__ float wb_float<__half>(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T wb_from_float(float v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half wb_from_float<__half>(float v) { return __float2half_rn(v); }
__device__ __forceinline__ float wb_round_half(float v) { return __half2float(__float2half_rn(v)); }

// Saturation bounds of the quantized types.
template <typename T> struct WbRange;
template <> struct WbRange<signed char> { static __device__ __forceinline__ float lo() { return -128.f; }
                                          static __device__ __forceinline__ float hi() { return 127.f; } };
template <> struct WbRange<unsigned char> { static __device__ __forceinline__ float lo() { return 0.f; }
                                            static __device__ __forceinline__ float hi() { return 255.f; } };

// y = saturate(round_half_even(x / scale) + zero_point). The oracle divides in the scale's dtype:
// float32, or float16 when half_math (a float16 scale, no `precision` attr): x is then rounded to
// float16 first and the quotient after (a float32 quotient rounded to float16 is the correctly
// rounded float16 quotient: 24 >= 2 * 11 + 2 bits). The integer zero point is added to the rounded
// integer exactly (|q| < 2^24; anything larger saturates either way). NaN gives 0, as the oracle's
// nan_to_num before its clip; +-inf saturate.
template <typename TQ>
__device__ __forceinline__ TQ wb_quantize(float v, float scale, float zero_point, int half_math) {
    if (half_math) v = wb_round_half(v);
    float q = __fdiv_rn(v, scale);
    if (half_math) q = wb_round_half(q);
    q = __fadd_rn(rintf(q), zero_point);
    q = q != q ? 0.f : fminf(fmaxf(q, WbRange<TQ>::lo()), WbRange<TQ>::hi());
    return static_cast<TQ>(q);
}
