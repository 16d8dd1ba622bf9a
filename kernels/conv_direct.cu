// Direct NHWC convolutions with the fused epilogue  y = act(conv(x, w) + bias + residual).
//
// The always-correct fallback for every Conv: any group count, any channel count (the 3-channel
// first conv of ResNet), any stride, pad and dilation. Accumulates in fp32 whatever the storage.
// T is the storage type: float, or unsigned short holding fp16 bits (no cuda_fp16.h needed, so the
// file compiles under NVRTC with no include path but our own).
#include "epilogue.cuh"

__device__ __forceinline__ float wb_load(const float* p) { return *p; }
__device__ __forceinline__ float wb_load(const unsigned short* p) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(*p));
    return f;
}
__device__ __forceinline__ void wb_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void wb_store(unsigned short* p, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    *p = h;
}

// General grouped conv. One thread computes KPT consecutive output channels (of one group) of one
// output pixel, so each input value it loads feeds KPT multiply-adds. Threads next to each other
// take the next channels of the same pixel: their weight reads are contiguous, their input reads
// the same address (a broadcast). Weights are laid out [G][R][S][Cg][Kg]; bias is fp32 [K] or
// null; residual has y's shape or is null. Requires Kg % KPT == 0.
template <typename T, int KPT>
__global__ void conv_grouped(const T* __restrict__ x, const T* __restrict__ w, const float* __restrict__ bias,
                             const T* __restrict__ residual, T* __restrict__ y,
                             int N, int H, int W, int C, int K, int P, int Q, int R, int S, int G,
                             int sh, int sw, int ph, int pw, int dh, int dw, int act, float p0, float p1) {
    const int Kg = K / G, Cg = C / G;
    const int kvecs = K / KPT;
    const long long total = (long long)N * P * Q * kvecs;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int kv = (int)(idx % kvecs);
        const long long pix = idx / kvecs;
        const int q = (int)(pix % Q);
        const long long t = pix / Q;
        const int p = (int)(t % P);
        const int n = (int)(t / P);
        const int k0 = kv * KPT;
        const int g = k0 / Kg;
        const int kg0 = k0 - g * Kg;
        float acc[KPT];
#pragma unroll
        for (int j = 0; j < KPT; ++j) acc[j] = 0.f;
        for (int r = 0; r < R; ++r) {
            const int ih = p * sh - ph + r * dh;
            if (ih < 0 || ih >= H) continue;
            for (int s = 0; s < S; ++s) {
                const int iw = q * sw - pw + s * dw;
                if (iw < 0 || iw >= W) continue;
                const T* xp = x + (((long long)n * H + ih) * W + iw) * C + (long long)g * Cg;
                const T* wp = w + ((((long long)g * R + r) * S + s) * Cg) * Kg + kg0;
                for (int c = 0; c < Cg; ++c) {
                    const float xv = wb_load(xp + c);
#pragma unroll
                    for (int j = 0; j < KPT; ++j) acc[j] = fmaf(xv, wb_load(wp + (long long)c * Kg + j), acc[j]);
                }
            }
        }
        const long long out = pix * K + k0;
#pragma unroll
        for (int j = 0; j < KPT; ++j) {
            float v = acc[j];
            if (bias) v += bias[k0 + j];
            if (residual) v += wb_load(residual + out + j);
            wb_store(y + out + j, wb_activate(v, act, p0, p1));
        }
    }
}

// Depthwise conv (group == C == K, MobileNet): one thread per output element, channels fastest,
// so a warp reads 32 consecutive channels of one pixel. Weights are laid out [R][S][C].
template <typename T>
__global__ void conv_depthwise(const T* __restrict__ x, const T* __restrict__ w, const float* __restrict__ bias,
                               const T* __restrict__ residual, T* __restrict__ y,
                               int N, int H, int W, int C, int P, int Q, int R, int S,
                               int sh, int sw, int ph, int pw, int dh, int dw, int act, float p0, float p1) {
    const long long total = (long long)N * P * Q * C;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % C);
        const long long pix = idx / C;
        const int q = (int)(pix % Q);
        const long long t = pix / Q;
        const int p = (int)(t % P);
        const int n = (int)(t / P);
        float acc = 0.f;
        for (int r = 0; r < R; ++r) {
            const int ih = p * sh - ph + r * dh;
            if (ih < 0 || ih >= H) continue;
            for (int s = 0; s < S; ++s) {
                const int iw = q * sw - pw + s * dw;
                if (iw < 0 || iw >= W) continue;
                acc = fmaf(wb_load(x + (((long long)n * H + ih) * W + iw) * C + c),
                           wb_load(w + ((long long)r * S + s) * C + c), acc);
            }
        }
        if (bias) acc += bias[c];
        if (residual) acc += wb_load(residual + idx);
        wb_store(y + idx, wb_activate(acc, act, p0, p1));
    }
}
