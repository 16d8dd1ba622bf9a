// Window and global pooling, NCHW and NHWC, fp32 and fp16 storage, fp32 math; max pools also on
// int8 / uint8 (exact: a max only picks one of its inputs, and float holds every 8-bit value);
// the int8 global average pool with its requantization (QGlobalAveragePool) at the end.
//
// Window pools: one thread per output element. In NHWC consecutive threads take consecutive
// channels of one output pixel, so every tap's loads are coalesced over C. Padding follows the
// CPU oracle (workbench/backends/cpu/ops/pooling.py): max ignores positions outside the input
// (it pads with -inf, or an integer type's lowest value), average divides by the number of
// "countable" taps: inside the input, or, with count_include_pad, inside the explicitly padded
// input (not the ceil_mode overhang).
#include <cuda_fp16.h>

#define WB_NEG_INF __int_as_float(0xff800000)

template <typename T> __device__ __forceinline__ float wb_load(const T* p) { return static_cast<float>(*p); }
template <> __device__ __forceinline__ float wb_load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ T wb_store(float v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half wb_store<__half>(float v) { return __float2half_rn(v); }
// The max of no taps: -inf for floats, the lowest value for integers (what the oracle pads with).
template <typename T> __device__ __forceinline__ float wb_lowest() { return WB_NEG_INF; }
template <> __device__ __forceinline__ float wb_lowest<signed char>() { return -128.f; }
template <> __device__ __forceinline__ float wb_lowest<unsigned char>() { return 0.f; }

// The geometry travels as plain int arguments (CuPy passes scalars, not structs):
// input n, c, h, w; output oh, ow; kernel, strides, dilations; begin pads (negative for SAME
// pools that crop); end pads (for count_include_pad).
#define WB_POOL_PARAMS int n, int c, int h, int w, int oh, int ow, int kh, int kw, int sh, int sw, \
    int dh, int dw, int ph, int pw, int ph_end, int pw_end, int count_include_pad

// IS_MAX: max pool, else average (floats only); NHWC: channels-last storage. The general path: any
// channel count and alignment; max_pool2d_nhwc_vec16 below is the fast NHWC one.
template <typename T, bool IS_MAX, bool NHWC>
__global__ void pool2d(const T* __restrict__ x, T* __restrict__ y, WB_POOL_PARAMS) {
    long long total = (long long)n * c * oh * ow;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        int ch, ox, oy, b;
        long long rest = idx;
        if (NHWC) {
            ch = rest % c; rest /= c; ox = rest % ow; rest /= ow; oy = rest % oh; b = rest / oh;
        } else {
            ox = rest % ow; rest /= ow; oy = rest % oh; rest /= oh; ch = rest % c; b = rest / c;
        }
        const int y0 = oy * sh - ph, x0 = ox * sw - pw;
        float acc = IS_MAX ? wb_lowest<T>() : 0.f;
        int count = 0;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = y0 + ky * dh;
            const bool row_in = iy >= 0 && iy < h;
            if (!IS_MAX && count_include_pad) {
                if (iy >= -ph && iy < h + ph_end) {
                    for (int kx = 0; kx < kw; ++kx) {
                        const int ix = x0 + kx * dw;
                        count += (ix >= -pw && ix < w + pw_end) ? 1 : 0;
                    }
                }
            }
            if (!row_in) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = x0 + kx * dw;
                if (ix < 0 || ix >= w) continue;
                long long off = NHWC ? (((long long)b * h + iy) * w + ix) * c + ch
                                     : (((long long)b * c + ch) * h + iy) * w + ix;
                float v = wb_load<T>(x + off);
                if (IS_MAX) acc = (v > acc || v != v) ? v : acc;
                else { acc += v; if (!count_include_pad) ++count; }
            }
        }
        if (!IS_MAX) acc = acc / (float)count;      // count 0 -> NaN, as the oracle's 0/0
        y[idx] = wb_store<T>(acc);
    }
}

// Lane-wise max of two 32-bit words of packed T values, and the word a max starts from. Floats
// propagate NaN as pool2d does (any NaN tap gives NaN); integers use the byte-SIMD max.
template <typename T> struct WbMaxWord;
template <> struct WbMaxWord<float> {
    static __device__ __forceinline__ unsigned lowest() { return 0xff800000u; }               // -inf
    static __device__ __forceinline__ unsigned max(unsigned a, unsigned b) {
        const float fa = __uint_as_float(a), fb = __uint_as_float(b);
        return (fb > fa || fb != fb) ? b : a;
    }
};
template <> struct WbMaxWord<__half> {
    static __device__ __forceinline__ unsigned lowest() { return 0xfc00fc00u; }               // -inf, -inf
    static __device__ __forceinline__ unsigned max(unsigned a, unsigned b) {
        __half2 r = __hmax2_nan(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
        return *reinterpret_cast<const unsigned*>(&r);
    }
};
template <> struct WbMaxWord<signed char> {
    static __device__ __forceinline__ unsigned lowest() { return 0x80808080u; }               // -128 x 4
    static __device__ __forceinline__ unsigned max(unsigned a, unsigned b) { return __vmaxs4(a, b); }
};
template <> struct WbMaxWord<unsigned char> {
    static __device__ __forceinline__ unsigned lowest() { return 0u; }
    static __device__ __forceinline__ unsigned max(unsigned a, unsigned b) { return __vmaxu4(a, b); }
};

// NHWC max pool, 16 bytes of channels per thread; needs C * sizeof(T) % 16 == 0, 16-byte aligned
// x and y, and fewer than 2^31 output chunks (the host checks). One thread per (output pixel,
// 16-byte chunk), chunks fastest: a warp's loads of one tap are whole 16-byte vectors of a few
// neighbouring pixels (coalesced), overlapping windows hit in L1/L2, the max stays in registers,
// and the store is one 16-byte vector. KH, KW > 0 fix the window at compile time, so the taps
// unroll into one branch-free block (a padding tap's load is predicated off and it contributes the
// max's identity) and all the loads are in flight together; 0 takes kh, kw from the arguments.
template <typename T, int KH, int KW>
__global__ void max_pool2d_nhwc_vec16(const T* __restrict__ x_, T* __restrict__ y_, WB_POOL_PARAMS) {
    typedef WbMaxWord<T> M;
    const unsigned chunks = (unsigned)c * sizeof(T) / 16;
    const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (idx >= (long long)n * oh * ow * chunks) return;
    unsigned rest = (unsigned)idx;
    const unsigned chunk = rest % chunks; rest /= chunks;
    const int ox = rest % ow; rest /= ow;
    const int oy = rest % oh; const int b = rest / oh;
    const int y0 = oy * sh - ph, x0 = ox * sw - pw;
    const uint4* __restrict__ image = reinterpret_cast<const uint4*>(x_) + (long long)b * h * w * chunks + chunk;
    const uint4 lowest = make_uint4(M::lowest(), M::lowest(), M::lowest(), M::lowest());
    uint4 acc = lowest;
    const int taps_y = KH > 0 ? KH : kh, taps_x = KW > 0 ? KW : kw;
#pragma unroll
    for (int ky = 0; ky < taps_y; ++ky) {
        const int iy = y0 + ky * dh;
#pragma unroll
        for (int kx = 0; kx < taps_x; ++kx) {
            const int ix = x0 + kx * dw;
            const bool inside = (unsigned)iy < (unsigned)h && (unsigned)ix < (unsigned)w;
            const uint4 v = inside ? __ldg(image + ((long long)iy * w + ix) * chunks) : lowest;
            acc.x = M::max(acc.x, v.x); acc.y = M::max(acc.y, v.y);
            acc.z = M::max(acc.z, v.z); acc.w = M::max(acc.w, v.w);
        }
    }
    reinterpret_cast<uint4*>(y_)[idx] = acc;
}

// Global pools. NHWC: one thread per (n, c), looping over the pixels (coalesced over c).
template <typename T, bool IS_MAX>
__global__ void global_pool_nhwc(const T* __restrict__ x, T* __restrict__ y, int n, int hw, int c) {
    long long total = (long long)n * c;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long b = idx / c, ch = idx % c;
        const T* p = x + b * (long long)hw * c + ch;
        float acc = IS_MAX ? wb_lowest<T>() : 0.f;
        for (int i = 0; i < hw; ++i) {
            float v = wb_load<T>(p + (long long)i * c);
            if (IS_MAX) acc = (v > acc || v != v) ? v : acc; else acc += v;
        }
        y[idx] = wb_store<T>(IS_MAX ? acc : acc / (float)hw);
    }
}

// NCHW: one warp per (n, c) row of hw contiguous values, lanes stride the row, shuffle reduction.
template <typename T, bool IS_MAX>
__global__ void global_pool_nchw(const T* __restrict__ x, T* __restrict__ y, long long rows, int hw) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
        const T* p = x + row * hw;
        float acc = IS_MAX ? wb_lowest<T>() : 0.f;
        for (int i = lane; i < hw; i += 32) {
            float v = wb_load<T>(p + i);
            if (IS_MAX) acc = (v > acc || v != v) ? v : acc; else acc += v;
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
            float other = __shfl_xor_sync(0xffffffffu, acc, offset);
            if (IS_MAX) acc = (other > acc || other != other) ? other : acc; else acc += other;
        }
        if (lane == 0) y[row] = wb_store<T>(IS_MAX ? acc : acc / (float)hw);
    }
}

// QGlobalAveragePool (workbench/ir/fused/pool.py): int8 in, exact int32 sums, one float32 factor
// (M / count, divided on the host as the CPU oracle divides), round half to even, saturate.
__device__ __forceinline__ signed char wb_requantize_sum(int acc, float factor) {
    return (signed char)max(-128, min(127, __float2int_rn(__int2float_rn(acc) * factor)));
}

// NHWC: one thread per VEC consecutive channels of one image (VEC = 4 reads a char4 per pixel),
// coalesced over C; the grid strides over images x channel groups.
template <int VEC>
__global__ void qglobal_avg_pool_nhwc(const signed char* __restrict__ x, signed char* __restrict__ y, int n,
                                      int hw, int c, float factor) {
    const int groups = c / VEC;
    const long long total = (long long)n * groups;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long b = idx / groups;
        const int ch = (int)(idx % groups) * VEC;
        const signed char* p = x + b * (long long)hw * c + ch;
        int acc[VEC] = {};
        #pragma unroll 7
        for (int i = 0; i < hw; ++i) {
            if constexpr (VEC == 4) {
                const char4 v = *reinterpret_cast<const char4*>(p + (long long)i * c);
                acc[0] += v.x; acc[1] += v.y; acc[2] += v.z; acc[3] += v.w;
            } else {
                acc[0] += p[(long long)i * c];
            }
        }
        #pragma unroll
        for (int j = 0; j < VEC; ++j) y[b * c + ch + j] = wb_requantize_sum(acc[j], factor);
    }
}

// NCHW: one warp per (n, c) row of hw contiguous values, integer shuffle reduction.
__global__ void qglobal_avg_pool_nchw(const signed char* __restrict__ x, signed char* __restrict__ y,
                                      long long rows, int hw, float factor) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
        const signed char* p = x + row * hw;
        int acc = 0;
        for (int i = lane; i < hw; i += 32) acc += p[i];
        for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
        if (lane == 0) y[row] = wb_requantize_sum(acc, factor);
    }
}
