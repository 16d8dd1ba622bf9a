// Implicit-GEMM tensor-core convolution, NHWC fp16 in, fp32 accumulate, fused epilogue:
//     y = half(act(conv(x, w) + bias + residual))
//
// As a GEMM: M = N*P*Q output pixels, N = K output channels, K_gemm = R*S*C (tap-major, channel
// fastest). A[m][kk] is gathered straight from the image (never materialised: "implicit"),
// B is the weight stored [K][R][S][C], i.e. B transposed with kk contiguous, which is the
// column-major B the tensor cores want. C % 8 == 0 makes every 8-element run of kk one tap and 16
// contiguous bytes, so each is one cp.async (zero-filled when it falls in the padding).
//
// Tiles: a block computes BM x BN of Y with (BM/WM) x (BN/WN) warps, each WM x WN, marching
// along K_gemm BK at a time through a STAGES-deep cp.async ring in shared memory. Fragments come
// from ldmatrix, products from mma.sync.m16n8k16 (fp16 x fp16 -> fp32). Rows of the shared tiles
// are padded by 8 halves (16 bytes) so ldmatrix's eight 16-byte row reads hit distinct banks.
// The epilogue stages the fp32 tile in shared memory so that the residual loads and the output
// stores are 16-byte vectors, coalesced. Grid: one block per (m tile, n tile); consecutive blocks
// share an m tile, so the image rows they gather stay in L2. Dynamic shared memory:
// max(STAGES * (BM + BN) * (BK + 8) * 2, BM * (BN + 8) * 4) bytes.
// Half values travel as raw 16-bit patterns (unsigned short): no cuda_fp16.h needed under NVRTC.
#include "async_copy.cuh"
#include "epilogue.cuh"

namespace wb_igemm {

using namespace wb_async;


__device__ __forceinline__ void mma16816(float* d, const unsigned* a, const unsigned* b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ float half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short float_to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

}  // namespace wb_igemm

extern __shared__ __align__(16) unsigned char wb_igemm_smem[];

template <int BM, int BN, int BK, int WM, int WN, int STAGES>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
conv_igemm(const unsigned short* __restrict__ x, const unsigned short* __restrict__ w,
           const float* __restrict__ bias, const unsigned short* __restrict__ residual,
           unsigned short* __restrict__ y,
           int N, int H, int W, int C, int K, int P, int Q, int R, int S,
           int sh, int sw, int ph, int pw, int dh, int dw, int act, float p0, float p1) {
    using namespace wb_igemm;
    constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN;
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int LDS = BK + 8;                    // halves per shared row (16-byte pad)
    constexpr int CHUNKS = BK / 8;                 // 16-byte chunks per row
    constexpr int ROWS_PER_PASS = THREADS / CHUNKS;
    constexpr int A_ITERS = BM / ROWS_PER_PASS;
    constexpr int B_ITERS = BN / ROWS_PER_PASS;
    constexpr int MI = WM / 16, NI = WN / 8;
    static_assert(BK % 16 == 0 && WM % 16 == 0 && WN % 16 == 0, "tile shapes");
    static_assert(THREADS % CHUNKS == 0 && BM % ROWS_PER_PASS == 0 && BN % ROWS_PER_PASS == 0, "loader shapes");
    static_assert(STAGES >= 2, "at least double buffering");

    unsigned short* As = reinterpret_cast<unsigned short*>(wb_igemm_smem);
    unsigned short* Bs = As + STAGES * BM * LDS;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
    const int M = N * P * Q;
    const int Ktot = R * S * C;
    const int KT = (Ktot + BK - 1) / BK;
    const int n_tiles = (K + BN - 1) / BN;
    const int m0 = (blockIdx.x / n_tiles) * BM;
    const int n0 = (blockIdx.x % n_tiles) * BN;

    // the rows this thread loads, fixed for the whole K loop: their image, top-left tap position
    const int chunk = tid % CHUNKS;
    const int row0 = tid / CHUNKS;
    long long a_img[A_ITERS];
    int a_h[A_ITERS], a_w[A_ITERS];
#pragma unroll
    for (int i = 0; i < A_ITERS; ++i) {
        const int m = m0 + row0 + i * ROWS_PER_PASS;
        if (m < M) {
            const int q = m % Q, t = m / Q, p = t % P, n = t / P;
            a_img[i] = (long long)n * H * W * C;
            a_h[i] = p * sh - ph;
            a_w[i] = q * sw - pw;
        } else {                                   // past the last pixel: always out of bounds
            a_img[i] = 0;
            a_h[i] = -(1 << 29);
            a_w[i] = 0;
        }
    }

    auto load_tile = [&](int stage, int kt) {
        const int kk = kt * BK + chunk * 8;
        const bool k_ok = kk < Ktot;
        int c = 0, r = 0, s = 0;
        if (k_ok) {
            c = kk % C;
            const int rs = kk / C;
            r = rs / S;
            s = rs - r * S;
        }
        unsigned short* as = As + stage * BM * LDS;
#pragma unroll
        for (int i = 0; i < A_ITERS; ++i) {
            const int row = row0 + i * ROWS_PER_PASS;
            const int ih = a_h[i] + r * dh, iw = a_w[i] + s * dw;
            const bool ok = k_ok && ih >= 0 && ih < H && iw >= 0 && iw < W;
            const unsigned short* src = ok ? x + a_img[i] + ((long long)ih * W + iw) * C + c : x;
            cp_async16(smem_u32(as + row * LDS + chunk * 8), src, ok ? 16 : 0);
        }
        unsigned short* bs = Bs + stage * BN * LDS;
#pragma unroll
        for (int i = 0; i < B_ITERS; ++i) {
            const int row = row0 + i * ROWS_PER_PASS;
            const int k = n0 + row;
            const bool ok = k_ok && k < K;
            const unsigned short* src = ok ? w + (long long)k * Ktot + kk : w;
            cp_async16(smem_u32(bs + row * LDS + chunk * 8), src, ok ? 16 : 0);
        }
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < KT) load_tile(st, st);
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();               // tile kt has landed (this thread's copies)
        __syncthreads();                           // ... everyone's; and stage kt-1 is free again
        const int next = kt + STAGES - 1;
        if (next < KT) load_tile(next % STAGES, next);
        cp_async_commit();                         // (an empty group keeps the counting uniform)

        const unsigned short* as = As + (kt % STAGES) * BM * LDS;
        const unsigned short* bs = Bs + (kt % STAGES) * BN * LDS;
#pragma unroll
        for (int k16 = 0; k16 < BK / 16; ++k16) {
            unsigned a[MI][4], b[NI][2];
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                const int row = warp_m * WM + i * 16 + (lane & 15);
                const int col = k16 * 16 + (lane >> 4) * 8;
                ldmatrix_x4(smem_u32(as + row * LDS + col), a[i][0], a[i][1], a[i][2], a[i][3]);
            }
#pragma unroll
            for (int j = 0; j < NI; j += 2) {
                const int row = warp_n * WN + j * 8 + (lane >> 4) * 8 + (lane & 7);
                const int col = k16 * 16 + ((lane >> 3) & 1) * 8;
                ldmatrix_x4(smem_u32(bs + row * LDS + col), b[j][0], b[j][1], b[j + 1][0], b[j + 1][1]);
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NI; ++j) mma16816(acc[i][j], a[i], b[j]);
        }
    }
    cp_async_wait<0>();

    // epilogue: the fp32 tile goes through shared memory (the pipeline's buffers, free now), so
    // that each thread then owns 8 adjacent channels of one pixel: 16-byte residual loads and
    // output stores, coalesced across the warp
    __syncthreads();
    constexpr int LDC = BN + 8;                    // floats per staged row (pad: fewer bank conflicts)
    float* Cs = reinterpret_cast<float*>(wb_igemm_smem);
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int j = 0; j < NI; ++j) {
            const int r = warp_m * WM + i * 16 + (lane >> 2);
            const int c = warp_n * WN + j * 8 + (lane & 3) * 2;
            *reinterpret_cast<float2*>(Cs + r * LDC + c) = make_float2(acc[i][j][0], acc[i][j][1]);
            *reinterpret_cast<float2*>(Cs + (r + 8) * LDC + c) = make_float2(acc[i][j][2], acc[i][j][3]);
        }
    }
    __syncthreads();
    constexpr int VECS = BN / 8;                   // 8-channel vectors per tile row
    for (int idx = tid; idx < BM * VECS; idx += THREADS) {
        const int row = idx / VECS, vec = idx % VECS;
        const int m = m0 + row, col = n0 + vec * 8;
        if (m >= M || col >= K) continue;          // K % 8 == 0: a vector is wholly in or out
        float v[8];
        const float4 lo = *reinterpret_cast<const float4*>(Cs + row * LDC + vec * 8);
        const float4 hi = *reinterpret_cast<const float4*>(Cs + row * LDC + vec * 8 + 4);
        v[0] = lo.x; v[1] = lo.y; v[2] = lo.z; v[3] = lo.w; v[4] = hi.x; v[5] = hi.y; v[6] = hi.z; v[7] = hi.w;
        if (bias) {
#pragma unroll
            for (int e = 0; e < 8; ++e) v[e] += bias[col + e];
        }
        const long long off = (long long)m * K + col;
        if (residual) {
            const uint4 z = *reinterpret_cast<const uint4*>(residual + off);
            const unsigned zw[4] = {z.x, z.y, z.z, z.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                v[2 * e] += half_to_float((unsigned short)(zw[e] & 0xffffu));
                v[2 * e + 1] += half_to_float((unsigned short)(zw[e] >> 16));
            }
        }
        unsigned packed[4];
#pragma unroll
        for (int e = 0; e < 4; ++e)
            packed[e] = (unsigned)float_to_half(wb_activate(v[2 * e], act, p0, p1)) |
                        ((unsigned)float_to_half(wb_activate(v[2 * e + 1], act, p0, p1)) << 16);
        *reinterpret_cast<uint4*>(y + off) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
}
