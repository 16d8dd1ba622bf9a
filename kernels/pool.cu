// Window and global pooling, NCHW and NHWC, fp32 and fp16 storage, fp32 math.
//
// Window pools: one thread per output element. In NHWC consecutive threads take consecutive
// channels of one output pixel, so every tap's loads are coalesced over C. Padding follows the
// CPU oracle (workbench/backends/cpu/ops/pooling.py): max ignores positions outside the input
// (it pads with -inf), average divides by the number of "countable" taps: inside the input, or,
// with count_include_pad, inside the explicitly padded input (not the ceil_mode overhang).
#include <cuda_fp16.h>

#define WB_NEG_INF __int_as_float(0xff800000)

template <typename T> __device__ __forceinline__ float wb_load(const T* p) { return static_cast<float>(*p); }
template <> __device__ __forceinline__ float wb_load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ T wb_store(float v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half wb_store<__half>(float v) { return __float2half_rn(v); }

// The geometry travels as plain int arguments (CuPy passes scalars, not structs):
// input n, c, h, w; output oh, ow; kernel, strides, dilations; begin pads (negative for SAME
// pools that crop); end pads (for count_include_pad).
#define WB_POOL_PARAMS int n, int c, int h, int w, int oh, int ow, int kh, int kw, int sh, int sw, \
    int dh, int dw, int ph, int pw, int ph_end, int pw_end, int count_include_pad

// IS_MAX: max pool, else average; NHWC: channels-last storage.
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
        float acc = IS_MAX ? WB_NEG_INF : 0.f;
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

// Global pools. NHWC: one thread per (n, c), looping over the pixels (coalesced over c).
template <typename T, bool IS_MAX>
__global__ void global_pool_nhwc(const T* __restrict__ x, T* __restrict__ y, int n, int hw, int c) {
    long long total = (long long)n * c;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long b = idx / c, ch = idx % c;
        const T* p = x + b * (long long)hw * c + ch;
        float acc = IS_MAX ? WB_NEG_INF : 0.f;
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
        float acc = IS_MAX ? WB_NEG_INF : 0.f;
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
