// QuantizeLinear and DequantizeLinear, bit-exact with the CPU oracle
// (workbench/backends/cpu/ops/quantize.py), any rank, per-tensor or per-axis parameters.
//
// One thread per element in a grid-stride loop. The scale / zero point of element i is entry
// c * step of its array, c = (i / inner) % channels the index along the quantization axis (inner:
// the product of the dims after it); step is 0 for a per-tensor parameter, so one kernel serves
// both and a per-tensor layer does no division. Every float operation is written as its IEEE
// round-to-nearest intrinsic, so no compiler flag (fast-math, FMA contraction) can change a bit.
#include "quantize.cuh"

__device__ __forceinline__ long long wb_channel(long long i, long long inner, int channels) {
    return channels == 1 ? 0 : (i / inner) % channels;
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
