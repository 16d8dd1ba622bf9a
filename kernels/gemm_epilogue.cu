// The epilogue of library GEMMs (cuBLAS writes Y, this finishes it in place):
//     Y[rows, n] = act(Y + bias_scale * bias[n] + R[rows, n])
// one pass over Y, VEC elements (16 bytes) a thread where alignment allows. T (Y and R) and B (the
// bias) are storage types: unsigned short (fp16 bits, converted with PTX cvt: no CUDA headers
// needed) or float. bias and R may be null.
#include "epilogue.cuh"

namespace wb_gemm_epilogue {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ void store(float& dst, float v) { dst = v; }
__device__ __forceinline__ void store(unsigned short& dst, float v) {
    asm("cvt.rn.f16.f32 %0, %1;\n" : "=h"(dst) : "f"(v));
}

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
};

}  // namespace wb_gemm_epilogue

template <typename T, typename B, int VEC>
__global__ void __launch_bounds__(256)
gemm_epilogue(T* __restrict__ y, const B* __restrict__ bias, const T* __restrict__ residual,
              long long total, int n, float bias_scale, int act, float p0, float p1) {
    using namespace wb_gemm_epilogue;
    const long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (i >= total) return;
    Pack<T, VEC> out = *reinterpret_cast<const Pack<T, VEC>*>(y + i);
    Pack<T, VEC> res;
    if (residual) res = *reinterpret_cast<const Pack<T, VEC>*>(residual + i);
    const int col = bias ? static_cast<int>(i % n) : 0;       // VEC divides n: a pack stays in one row
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
        float v = to_float(out.v[j]);
        if (bias) v += bias_scale * to_float(bias[col + j]);
        if (residual) v += to_float(res.v[j]);
        store(out.v[j], wb_activate(v, act, p0, p1));
    }
    *reinterpret_cast<Pack<T, VEC>*>(y + i) = out;
}
