// INT8 tensor-core GEMM for workbench::FusedQConv layers that are 1x1 convolutions (stride 1, no
// padding, group 1, NHWC): the convolution IS a GEMM over pixels,
//
//     Y[m, n] = epilogue( sum_k X[m, k] * W[n, k] )     m pixel (N*H*W), k input channel, n output channel
//
// X int8 [M, K] and W int8 [N, K] (the OIHW weight with 1x1 taps) are both K-contiguous, so their
// tiles are K-contiguous byte rows in shared memory and ldmatrix (non-transposed; a b16 pair is two
// adjacent k bytes) yields the fragments of mma.m16n8k32.row.col.s32.s8.s8.s32 for both:
//     A 16x32: a0 rows g, k 4t..4t+3 | a1 rows g+8 | a2 rows g, k 16+4t.. | a3 rows g+8, k 16+4t..
//     B 32x8 : b0 col g, k 4t..4t+3  | b1 col g, k 16+4t..        C: c0,c1 row g cols 2t,2t+1; c2,c3 row g+8
// (g = lane / 4, t = lane % 4; PTX ISA "Matrix Fragments for mma.m16n8k32"). Tiles stream in through a
// STAGES-deep cp.async ring of 16-byte copies; rows past M or N and chunks past K are zero-filled.
//
// The layers are memory bound (K is 64..2048), so the epilogue is built for bandwidth: the int32
// accumulators are staged through shared memory (reusing the ring) and each thread then finishes 16
// consecutive outputs of one row: 16-byte loads of M, B and the residual, 16-byte stores of Y. The
// float epilogue is the CPU emulation's, op for op, each rounded to float32 (no contraction):
//     v = float(acc) * M[n] (+ B[n]) (+ float(Z[m, n]) * zscale); v = act(v); Y = int8 (rint, saturate) | f16 | f32
// act: WB_ACT_NONE, WB_ACT_RELU or WB_ACT_CLIP (epilogue.cuh codes).
// Needs K % 16 == 0 and N % 16 == 0 (whole 16-byte chunks; a 16-column group is all in or all out).
//
// Template: BM x BN block tile, BK bytes deep; WARPS_M x WARPS_N warps. Every name expression
// qgemm<BM, BN, BK, WARPS_M, WARPS_N, STAGES> is one tactic (workbench/backends/cuda/tactics/qgemm.py).
#include "epilogue.cuh"

namespace wb_qgemm {

__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

__device__ __forceinline__ void mma_16832(int* c, const unsigned* a, const unsigned* b) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ float half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
    return f;
}

// two floats -> one 32-bit word of two halves (round to nearest even), `lo` at the lower address
__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// round half to even and saturate, as np.clip(np.rint(v), -128, 127); cvt.rni maps NaN to 0
__device__ __forceinline__ unsigned to_int8_bits(float v) {
    const int q = min(max(__float2int_rn(v), -128), 127);
    return static_cast<unsigned>(q) & 0xffu;
}

// the activations that are exact in float32 (the tactic refuses the others): wb_activate's numbers for
// these codes, without inlining its whole switch sixteen times
__device__ __forceinline__ float activate(float x, int act, float p0, float p1) {
    if (act == WB_ACT_RELU) return fmaxf(x, 0.f);
    if (act == WB_ACT_CLIP) return fminf(fmaxf(x, p0), p1);
    return x;
}

__device__ __forceinline__ void cond_swap(int4& a, int4& b, bool swap) {
    const int4 x = a, y = b;
    a = swap ? y : x;
    b = swap ? x : y;
}

}  // namespace wb_qgemm

// z_kind: 0 no residual, 1 int8, 2 float16, 3 float32; out_kind: 0 int8, 1 float16, 2 float32.
// One block per BM x BN tile, numbered along N first so the blocks sharing an X tile run together
// (X is read from DRAM once while N fits in a few tiles); a 1-D grid has no 65535-row limit.
template <int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32)
qgemm(const signed char* __restrict__ X, const signed char* __restrict__ Wt, const float* __restrict__ mult,
      const float* __restrict__ bias, const void* __restrict__ Z, void* __restrict__ Y, int M, int N, int K,
      float zscale, int z_kind, int out_kind, int act, float p0, float p1) {
    using namespace wb_qgemm;
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int LDS = BK + 16;                // bytes a smem row: +16 puts the 8 ldmatrix rows on distinct banks
    constexpr int TM = BM / WARPS_M, TN = BN / WARPS_N;
    constexpr int MI = TM / 16, NI = TN / 8;
    constexpr int CHUNKS_PER_ROW = BK / 16;     // 16-byte chunks of a tile row
    constexpr int A_CHUNKS = BM * CHUNKS_PER_ROW, B_CHUNKS = BN * CHUNKS_PER_ROW;
    constexpr int LDC = BN + 8;                 // int32 staging row: +8 words, the fragment stores hit distinct banks
    static_assert(BK % 32 == 0 && TM % 16 == 0 && TN % 16 == 0, "warp tile must be whole m16n8k32 pairs");
    static_assert(BN % 32 == 0, "the staging layout's bank spread assumes BN % 32 == 0");
    static_assert(A_CHUNKS % THREADS == 0 && B_CHUNKS % THREADS == 0, "tile loads must split evenly");
    static_assert(STAGES >= 2, "the cp.async ring needs two stages at least");

    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char* sA = smem_raw;
    unsigned char* sB = sA + STAGES * BM * LDS;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int n_blocks = (N + BN - 1) / BN;
    const int m0 = (blockIdx.x / n_blocks) * BM, n0 = (blockIdx.x % n_blocks) * BN;
    const int KT = (K + BK - 1) / BK;

    auto load_tile = [&](int stage, int kt) {
        const int k0 = kt * BK;
        unsigned char* dA = sA + stage * BM * LDS;
        unsigned char* dB = sB + stage * BN * LDS;
#pragma unroll
        for (int i = 0; i < A_CHUNKS / THREADS; ++i) {
            const int c = tid + i * THREADS, row = c / CHUNKS_PER_ROW, kc = (c % CHUNKS_PER_ROW) * 16;
            const int gm = m0 + row, gk = k0 + kc;
            const bool ok = gm < M && gk < K;
            cp_async16(smem_u32(dA + row * LDS + kc), ok ? X + (size_t)gm * K + gk : X, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < B_CHUNKS / THREADS; ++i) {
            const int c = tid + i * THREADS, row = c / CHUNKS_PER_ROW, kc = (c % CHUNKS_PER_ROW) * 16;
            const int gn = n0 + row, gk = k0 + kc;
            const bool ok = gn < N && gk < K;
            cp_async16(smem_u32(dB + row * LDS + kc), ok ? Wt + (size_t)gn * K + gk : Wt, ok ? 16 : 0);
        }
    };

    int acc[MI][NI][4];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load_tile(s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; ++kt) {
        cp_async_wait<STAGES - 2>();            // this thread's copies of tile kt have landed
        __syncthreads();                        // everyone's have; and tile kt-1 is no longer read
        const int next = kt + STAGES - 1;
        if (next < KT) load_tile(next % STAGES, next);
        cp_async_commit();

        const unsigned char* tA = sA + (kt % STAGES) * BM * LDS;
        const unsigned char* tB = sB + (kt % STAGES) * BN * LDS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 32) {
            unsigned af[MI][4], bf[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; ++mi) {   // matrices: (rows 0-7, k 0-15) (8-15, 0-15) (0-7, 16-31) (8-15, 16-31)
                const int row = wm * TM + mi * 16 + (lane & 15), col = kk + (lane >> 4) * 16;
                ldmatrix_x4(smem_u32(tA + row * LDS + col), af[mi][0], af[mi][1], af[mi][2], af[mi][3]);
            }
#pragma unroll
            for (int ni = 0; ni < NI; ni += 2) {  // matrices: (n 0-7, k 0-15) (0-7, 16-31) (8-15, 0-15) (8-15, 16-31)
                const int row = wn * TN + ni * 8 + ((lane >> 4) << 3) + (lane & 7);
                const int col = kk + ((lane >> 3) & 1) * 16;
                ldmatrix_x4(smem_u32(tB + row * LDS + col), bf[ni][0], bf[ni][1], bf[ni + 1][0], bf[ni + 1][1]);
            }
#pragma unroll
            for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) mma_16832(acc[mi][ni], af[mi], bf[ni]);
        }
    }
    cp_async_wait<0>();
    __syncthreads();                            // the ring is free: reuse it to stage the accumulators

    int* sC = reinterpret_cast<int*>(smem_raw);
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = wm * TM + mi * 16 + g + h * 8, col = wn * TN + ni * 8 + t4 * 2;
                *reinterpret_cast<int2*>(sC + row * LDC + col) = make_int2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
            }
    __syncthreads();

    // one thread, 16 consecutive columns of one row
    constexpr int GROUPS_PER_ROW = BN / 16;
    for (int gi = tid; gi < BM * GROUPS_PER_ROW; gi += THREADS) {
        const int row = gi / GROUPS_PER_ROW, j = gi % GROUPS_PER_ROW;
        const int gm = m0 + row, gn = n0 + j * 16;
        if (gm >= M || gn >= N) continue;
        // Read the four 16-byte chunks in the order q ^ s: the 8 threads of a quarter warp then hit 8
        // distinct bank groups (in order 0..3 they would collide 4-way); then swap back into place.
        const int s = (j >> 1) & 3;
        int4 v[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) v[q] = *reinterpret_cast<const int4*>(sC + row * LDC + j * 16 + 4 * (q ^ s));
        cond_swap(v[0], v[1], s & 1);
        cond_swap(v[2], v[3], s & 1);
        cond_swap(v[0], v[2], s & 2);
        cond_swap(v[1], v[3], s & 2);
        const int a[16] = {v[0].x, v[0].y, v[0].z, v[0].w, v[1].x, v[1].y, v[1].z, v[1].w,
                           v[2].x, v[2].y, v[2].z, v[2].w, v[3].x, v[3].y, v[3].z, v[3].w};

        float m[16], r[16];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const float4 f = __ldg(reinterpret_cast<const float4*>(mult + gn) + q);
            m[4 * q] = f.x, m[4 * q + 1] = f.y, m[4 * q + 2] = f.z, m[4 * q + 3] = f.w;
        }
#pragma unroll
        for (int i = 0; i < 16; ++i) r[i] = __fmul_rn(__int2float_rn(a[i]), m[i]);
        if (bias) {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const float4 f = __ldg(reinterpret_cast<const float4*>(bias + gn) + q);
                r[4 * q] = __fadd_rn(r[4 * q], f.x), r[4 * q + 1] = __fadd_rn(r[4 * q + 1], f.y);
                r[4 * q + 2] = __fadd_rn(r[4 * q + 2], f.z), r[4 * q + 3] = __fadd_rn(r[4 * q + 3], f.w);
            }
        }
        const size_t idx = (size_t)gm * N + gn;
        if (z_kind) {
            float z[16];
            if (z_kind == 1) {
                const int4 w = *reinterpret_cast<const int4*>(static_cast<const signed char*>(Z) + idx);
                const int words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
                for (int i = 0; i < 16; ++i) z[i] = static_cast<float>(static_cast<signed char>(words[i / 4] >> (8 * (i % 4))));
            } else if (z_kind == 2) {
                const uint4* src = reinterpret_cast<const uint4*>(static_cast<const unsigned short*>(Z) + idx);
#pragma unroll
                for (int q = 0; q < 2; ++q) {
                    const uint4 w = src[q];
                    const unsigned words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
                    for (int i = 0; i < 8; ++i)
                        z[8 * q + i] = half_to_float(static_cast<unsigned short>(words[i / 2] >> (16 * (i % 2))));
                }
            } else {
                const float4* src = reinterpret_cast<const float4*>(static_cast<const float*>(Z) + idx);
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const float4 f = src[q];
                    z[4 * q] = f.x, z[4 * q + 1] = f.y, z[4 * q + 2] = f.z, z[4 * q + 3] = f.w;
                }
            }
#pragma unroll
            for (int i = 0; i < 16; ++i) r[i] = __fadd_rn(r[i], __fmul_rn(z[i], zscale));
        }
        if (act) {
#pragma unroll
            for (int i = 0; i < 16; ++i) r[i] = activate(r[i], act, p0, p1);
        }
        if (out_kind == 0) {
            unsigned words[4];
#pragma unroll
            for (int q = 0; q < 4; ++q)
                words[q] = to_int8_bits(r[4 * q]) | (to_int8_bits(r[4 * q + 1]) << 8) |
                           (to_int8_bits(r[4 * q + 2]) << 16) | (to_int8_bits(r[4 * q + 3]) << 24);
            *reinterpret_cast<uint4*>(static_cast<signed char*>(Y) + idx) = make_uint4(words[0], words[1], words[2], words[3]);
        } else if (out_kind == 1) {
            uint4* dst = reinterpret_cast<uint4*>(static_cast<unsigned short*>(Y) + idx);
#pragma unroll
            for (int q = 0; q < 2; ++q)
                dst[q] = make_uint4(pack_half2(r[8 * q], r[8 * q + 1]), pack_half2(r[8 * q + 2], r[8 * q + 3]),
                                    pack_half2(r[8 * q + 4], r[8 * q + 5]), pack_half2(r[8 * q + 6], r[8 * q + 7]));
        } else {
            float4* dst = reinterpret_cast<float4*>(static_cast<float*>(Y) + idx);
#pragma unroll
            for (int q = 0; q < 4; ++q) dst[q] = make_float4(r[4 * q], r[4 * q + 1], r[4 * q + 2], r[4 * q + 3]);
        }
    }
}
