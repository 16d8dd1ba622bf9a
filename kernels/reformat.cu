// NCHW -> NHWC for tensors of few channels (an image input: C = 1..4), the Reformat in front of an
// NHWC network. A general strided transpose (cupy.copyto over a transposed view) moves ResNet-50's
// input at ~0.4 TB/s: with C = 3 each thread writes one element and reads across planes. Here a
// thread takes 4 consecutive pixels of one image: one 4-element vector load per channel plane
// (coalesced across the warp), then its 4 * C elements, interleaved, as 32-bit word stores.
// Needs H * W % 4 == 0 and 16-byte aligned buffers (the tactic checks both). The quantizing form
// reads float32 the same way and writes int8.

#include "quantize.cuh"

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec { T v[N]; };

// What an element becomes on the way: itself (a reformat moves bits), or its QuantizeLinear value.
struct WbKeep {
    template <typename T> __device__ __forceinline__ T operator()(T v) const { return v; }
};
struct WbQuantizeInt8 {
    float scale, zero_point;
    __device__ __forceinline__ signed char operator()(float v) const { return wb_quantize<signed char>(v, scale, zero_point, 0); }
};

template <typename TIn, typename TOut, int C, typename Convert>
__device__ __forceinline__ void wb_four_pixels_to_nhwc(const TIn* __restrict__ x, TOut* __restrict__ y, long long hw,
                                                       long long groups, Convert convert) {
    static_assert((4 * C * sizeof(TOut)) % 4 == 0, "a thread's output is whole words");
    constexpr int WORDS = C * sizeof(TOut);         // 4 pixels x C elements x sizeof(TOut) bytes / 4
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= groups) return;
    const long long per_image = hw / 4, n = i / per_image, g = i - n * per_image;
    Vec<TIn, 4> in[C];
#pragma unroll
    for (int c = 0; c < C; ++c) in[c] = reinterpret_cast<const Vec<TIn, 4>*>(x + (n * C + c) * hw)[g];
    union { TOut v[4 * C]; unsigned w[WORDS]; } out;
#pragma unroll
    for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int c = 0; c < C; ++c) out.v[p * C + c] = convert(in[c].v[p]);
    unsigned* dst = reinterpret_cast<unsigned*>(y + (n * hw + 4 * g) * C);
#pragma unroll
    for (int k = 0; k < WORDS; ++k) dst[k] = out.w[k];
}

template <typename T, int C>
__global__ void nchw_to_nhwc_few(const T* __restrict__ x, T* __restrict__ y, long long hw, long long groups) {
    wb_four_pixels_to_nhwc<T, T, C>(x, y, hw, groups, WbKeep{});
}

// The engine input's QuantizeLinear folded in (builder/layout.py): float32 in, int8 out, one pass
// over the float input instead of a quantize pass and a reformat pass; per-tensor scale, zero point.
template <int C>
__global__ void quantize_nchw_to_nhwc_few(const float* __restrict__ x, const float* __restrict__ scale,
                                          const signed char* __restrict__ zero_point, signed char* __restrict__ y,
                                          long long hw, long long groups) {
    wb_four_pixels_to_nhwc<float, signed char, C>(x, y, hw, groups,
                                                  WbQuantizeInt8{scale[0], static_cast<float>(zero_point[0])});
}
