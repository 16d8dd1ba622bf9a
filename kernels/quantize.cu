// QuantizeLinear and DequantizeLinear, bit-exact with the CPU oracle
// (workbench/backends/cpu/ops/quantize.py), any rank, per-tensor or per-axis parameters.
//
// One thread per element in a grid-stride loop. The scale / zero point of element i is entry
// c * step of its array, c = (i / inner) % channels the index along the quantization axis (inner:
// the product of the dims after it); step is 0 for a per-tensor parameter, so one kernel serves
// both and a per-tensor layer does no division. Every float operation is written as its IEEE
// round-to-nearest intrinsic, so no compiler flag (fast-math, FMA contraction) can change a bit.
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

__device__ __forceinline__ long long wb_channel(long long i, long long inner, int channels) {
    return channels == 1 ? 0 : (i / inner) % channels;
}

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

template <typename TX, typename TS, typename TQ>
__global__ void quantize_linear(const TX* __restrict__ x, const TS* __restrict__ scale,
                                const TQ* __restrict__ zero_point, TQ* __restrict__ y, long long total,
                                long long inner, int channels, int scale_step, int zp_step, int half_math) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = wb_channel(i, inner, channels);
        y[i] = wb_quantize<TQ>(wb_float(x[i]), wb_float(scale[c * scale_step]), wb_float(zero_point[c * zp_step]),
                               half_math);
    }
}

template <typename T>
struct alignas(4 * sizeof(T)) WbVec4 { T v[4]; };

// The per-tensor form four elements a thread: one vector load and one 4-byte store (the scalar
// loop moved ResNet-50's b256 input, fp32 -> int8, at ~1.9 TB/s on the H100). `groups` = total / 4;
// x and y aligned to 4 elements (the tactic checks).
template <typename TX, typename TS, typename TQ>
__global__ void quantize_linear_x4(const TX* __restrict__ x, const TS* __restrict__ scale,
                                   const TQ* __restrict__ zero_point, TQ* __restrict__ y, long long groups,
                                   int half_math) {
    const float s = wb_float(scale[0]), zp = wb_float(zero_point[0]);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < groups;
         i += (long long)gridDim.x * blockDim.x) {
        const WbVec4<TX> v = reinterpret_cast<const WbVec4<TX>*>(x)[i];
        WbVec4<TQ> q;
#pragma unroll
        for (int k = 0; k < 4; ++k) q.v[k] = wb_quantize<TQ>(wb_float(v.v[k]), s, zp, half_math);
        reinterpret_cast<WbVec4<TQ>*>(y)[i] = q;
    }
}

// (q - zero_point) as float32: exact for 8-bit types; int32 subtracts in 64 bits and rounds once,
// as the oracle's int64 difference cast to float32.
template <typename TQ> __device__ __forceinline__ float wb_centered(TQ q, TQ zp) {
    return static_cast<float>(static_cast<int>(q) - static_cast<int>(zp));
}
template <> __device__ __forceinline__ float wb_centered<int>(int q, int zp) {
    return __ll2float_rn(static_cast<long long>(q) - zp);
}

// y = (q - zero_point) * scale in float32, rounded once to the output type.
template <typename TQ, typename TS, typename TY>
__global__ void dequantize_linear(const TQ* __restrict__ x, const TS* __restrict__ scale,
                                  const TQ* __restrict__ zero_point, TY* __restrict__ y, long long total,
                                  long long inner, int channels, int scale_step, int zp_step) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = wb_channel(i, inner, channels);
        const float d = wb_centered(x[i], zero_point[c * zp_step]);
        y[i] = wb_from_float<TY>(__fmul_rn(d, wb_float(scale[c * scale_step])));
    }
}

// QuantizeLinear fused with the NCHW -> NHWC Reformat of an image input (C = 1..4 channels, per-tensor
// float32 scale): a thread takes 4 consecutive pixels of one image, one 16-byte load per channel
// plane (coalesced across the warp), and stores their 4 * C quantized values interleaved as C 32-bit
// words: one pass over the float input instead of a quantize pass and a reformat pass.
// `groups` = N * H * W / 4; needs H * W % 4 == 0 and 16-byte aligned x, 4-byte aligned y.
template <typename TQ, int C>
__global__ void quantize_nchw_to_nhwc_few(const float* __restrict__ x, const float* __restrict__ scale,
                                          const TQ* __restrict__ zero_point, TQ* __restrict__ y, long long hw,
                                          long long groups) {
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= groups) return;
    const float s = scale[0], zp = wb_float(zero_point[0]);
    const long long per_image = hw / 4, n = i / per_image, g = i - n * per_image;
    float4 in[C];
#pragma unroll
    for (int c = 0; c < C; ++c) in[c] = reinterpret_cast<const float4*>(x + (n * C + c) * hw)[g];
    union { TQ v[4 * C]; unsigned w[C]; } out;
#pragma unroll
    for (int c = 0; c < C; ++c) {
        out.v[0 * C + c] = wb_quantize<TQ>(in[c].x, s, zp, 0);
        out.v[1 * C + c] = wb_quantize<TQ>(in[c].y, s, zp, 0);
        out.v[2 * C + c] = wb_quantize<TQ>(in[c].z, s, zp, 0);
        out.v[3 * C + c] = wb_quantize<TQ>(in[c].w, s, zp, 0);
    }
    unsigned* dst = reinterpret_cast<unsigned*>(y + (n * hw + 4 * g) * C);
#pragma unroll
    for (int k = 0; k < C; ++k) dst[k] = out.w[k];
}
