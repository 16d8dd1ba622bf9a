// Row-wise normalizations: Softmax (with the optional scale and broadcast additive mask that
// attention needs) and LayerNorm. fp32 statistics whatever the storage type; one block per row
// with warp-shuffle reductions, or one warp per row when rows are short (attention: 128).
#include <cuda_fp16.h>

template <typename T> __device__ __forceinline__ float wb_load(const T* p) { return static_cast<float>(*p); }
template <> __device__ __forceinline__ float wb_load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ T wb_store(float v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half wb_store<__half>(float v) { return __float2half_rn(v); }

#define WB_NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || a > b) ? a : b; }
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reduction (sum or max) of one float per thread; every thread gets the result.
template <int THREADS, bool IS_MAX>
__device__ __forceinline__ float block_reduce(float v, float* smem) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = IS_MAX ? warp_max(v) : warp_sum(v);
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < THREADS / 32 ? smem[lane] : (IS_MAX ? WB_NEG_INF : 0.f);
        w = IS_MAX ? warp_max(w) : warp_sum(w);
        if (lane == 0) smem[32] = w;
    }
    __syncthreads();
    return smem[32];
}

// The mask of attention broadcast over [B0, B1, Sq, Sk] scores: row r = (b0 * B1 + b1) * Sq + q.
struct MaskIndex {
    long long s0, s1, s2, s3;
    int b1, sq;
    __device__ __forceinline__ long long row_offset(long long r) const {
        const long long q = r % sq, rest = r / sq;
        return (rest / b1) * s0 + (rest % b1) * s1 + q * s2;
    }
};

// y[r, :] = softmax(scale * x[r, :] + mask[r, :]) over rows of length n.
// WARP_ROWS: one warp per row (n small), else one block of THREADS per row.
template <typename TI, typename TO, typename TM, int THREADS, bool WARP_ROWS>
__global__ void __launch_bounds__(THREADS) softmax_rows(
        const TI* __restrict__ x, TO* __restrict__ y, long long rows, int n, float scale,
        const TM* __restrict__ mask, long long ms0, long long ms1, long long ms2, long long ms3, int mb1, int msq) {
    __shared__ float smem[33];
    const MaskIndex mi{ms0, ms1, ms2, ms3, mb1, msq};
    const int lane = threadIdx.x & 31;
    const long long step = WARP_ROWS ? (long long)gridDim.x * (THREADS / 32) : gridDim.x;
    long long r = WARP_ROWS ? (long long)blockIdx.x * (THREADS / 32) + (threadIdx.x >> 5) : blockIdx.x;
    const int start = WARP_ROWS ? lane : threadIdx.x, stride = WARP_ROWS ? 32 : THREADS;
    for (; r < rows; r += step) {
        const TI* xr = x + r * n;
        TO* yr = y + r * n;
        const TM* mr = mask ? mask + mi.row_offset(r) : nullptr;
        float m = WB_NEG_INF;
        for (int i = start; i < n; i += stride) {
            float v = wb_load(xr + i) * scale + (mr ? wb_load(mr + i * ms3) : 0.f);
            m = nan_max(m, v);
        }
        m = WARP_ROWS ? warp_max(m) : block_reduce<THREADS, true>(m, smem);
        float s = 0.f;
        for (int i = start; i < n; i += stride) {
            float v = wb_load(xr + i) * scale + (mr ? wb_load(mr + i * ms3) : 0.f);
            s += expf(v - m);
        }
        s = WARP_ROWS ? warp_sum(s) : block_reduce<THREADS, false>(s, smem);
        const float inv = 1.f / s;
        for (int i = start; i < n; i += stride) {
            float v = wb_load(xr + i) * scale + (mr ? wb_load(mr + i * ms3) : 0.f);
            yr[i] = wb_store<TO>(expf(v - m) * inv);
        }
    }
}

// Softmax along a middle axis of [outer, n, inner]: one thread per (outer, inner) column.
template <typename T>
__global__ void softmax_strided(const T* __restrict__ x, T* __restrict__ y, long long outer, int n, long long inner) {
    const long long total = outer * inner;
    for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < total;
         c += (long long)gridDim.x * blockDim.x) {
        const long long base = (c / inner) * n * inner + c % inner;
        float m = WB_NEG_INF, s = 0.f;
        for (int i = 0; i < n; ++i) m = nan_max(m, wb_load(x + base + i * inner));
        for (int i = 0; i < n; ++i) s += expf(wb_load(x + base + i * inner) - m);
        const float inv = 1.f / s;
        for (int i = 0; i < n; ++i) y[base + i * inner] = wb_store<T>(expf(wb_load(x + base + i * inner) - m) * inv);
    }
}

// y = (x - mean) / sqrt(var + eps) * scale + bias over rows of length n (var: mean squared
// deviation, two passes as the oracle). scale/bias are fp32, per element of the row, or absent.
template <typename T, int THREADS>
__global__ void __launch_bounds__(THREADS) layer_norm_rows(
        const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ scale, const float* __restrict__ bias,
        long long rows, int n, float eps) {
    __shared__ float smem[33];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * n;
        T* yr = y + r * n;
        float s = 0.f;
        for (int i = threadIdx.x; i < n; i += THREADS) s += wb_load(xr + i);
        const float mean = block_reduce<THREADS, false>(s, smem) / (float)n;
        float q = 0.f;
        for (int i = threadIdx.x; i < n; i += THREADS) { float d = wb_load(xr + i) - mean; q += d * d; }
        const float var = block_reduce<THREADS, false>(q, smem) / (float)n;
        const float inv = 1.f / sqrtf(var + eps);
        for (int i = threadIdx.x; i < n; i += THREADS) {
            float v = (wb_load(xr + i) - mean) * inv;
            if (scale) v *= scale[i];
            if (bias) v += bias[i];
            yr[i] = wb_store<T>(v);
        }
    }
}

// LayerNorm with one warp per row for rows that fit in registers (n <= 32 * VEC * CHUNKS, n a
// multiple of VEC, rows 16-byte aligned): x is read once with 16-byte loads, the statistics are
// warp shuffles (no shared memory, no block barriers), and 8 rows share a block of 256 threads.
// Same math as layer_norm_rows: mean, then the mean squared deviation, in fp32.
template <typename T> struct Vec16;
template <> struct Vec16<float> {
    static constexpr int N = 4;
    static __device__ __forceinline__ void load(const float* p, float* v) {
        const float4 r = *reinterpret_cast<const float4*>(p);
        v[0] = r.x; v[1] = r.y; v[2] = r.z; v[3] = r.w;
    }
    static __device__ __forceinline__ void store(float* p, const float* v) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    }
};
template <> struct Vec16<__half> {
    static constexpr int N = 8;
    static __device__ __forceinline__ void load(const __half* p, float* v) {
        const uint4 r = *reinterpret_cast<const uint4*>(p);
        const __half2* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(h[i]);
            v[2 * i] = f.x;
            v[2 * i + 1] = f.y;
        }
    }
    static __device__ __forceinline__ void store(__half* p, const float* v) {
        uint4 r;
        __half2* h = reinterpret_cast<__half2*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
        *reinterpret_cast<uint4*>(p) = r;
    }
};

template <typename T, int CHUNKS>
__global__ void __launch_bounds__(256) layer_norm_warp(
        const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ scale, const float* __restrict__ bias,
        long long rows, int n, float eps) {
    constexpr int VEC = Vec16<T>::N;
    const int lane = threadIdx.x & 31;
    for (long long r = blockIdx.x * 8LL + (threadIdx.x >> 5); r < rows; r += gridDim.x * 8LL) {
        const T* xr = x + r * n;
        T* yr = y + r * n;
        float v[CHUNKS][VEC];
        float s = 0.f;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            const int i = (c * 32 + lane) * VEC;
            if (i < n) {
                Vec16<T>::load(xr + i, v[c]);
#pragma unroll
                for (int e = 0; e < VEC; ++e) s += v[c][e];
            }
        }
        const float mean = warp_sum(s) / (float)n;
        float q = 0.f;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            if ((c * 32 + lane) * VEC < n) {
#pragma unroll
                for (int e = 0; e < VEC; ++e) { const float d = v[c][e] - mean; q += d * d; }
            }
        }
        const float inv = 1.f / sqrtf(warp_sum(q) / (float)n + eps);
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            const int i = (c * 32 + lane) * VEC;
            if (i < n) {
#pragma unroll
                for (int e = 0; e < VEC; ++e) {
                    float o = (v[c][e] - mean) * inv;
                    if (scale) o *= scale[i + e];
                    if (bias) o += bias[i + e];
                    v[c][e] = o;
                }
                Vec16<T>::store(yr + i, v[c]);
            }
        }
    }
}
