// Tensor-core GEMM with a fused epilogue: C[M,N] = act(alpha * A[M,K] @ B[K,N] + bias[N] + R[M,N]).
//
// A is fp16 row-major; the weight arrives pre-laid out as Bt[N,K] (K contiguous), so both operand
// tiles are K-contiguous rows in shared memory and ldmatrix (non-transposed) yields the register
// fragments of mma.sync.m16n8k16 (row.col, fp16 in, fp32 accumulate) for both. Tiles stream in
// through a STAGES-deep cp.async ring; rows past M or N and chunks past K are zero-filled
// (src-size 0), so any M, N and any K % 8 == 0 work. The epilogue reads the accumulators straight
// from registers: alpha, bias (fp32), residual (the output's dtype), activation, cast and store.
//
// Template: BM x BN block tile, BK deep; WARPS_M x WARPS_N warps, each owning a
// (BM/WARPS_M) x (BN/WARPS_N) warp tile of 16x8 mma tiles. Every name expression
// gemm_tc<BM, BN, BK, WARPS_M, WARPS_N, STAGES> is one tactic (workbench/backends/cuda/tactics/gemm_tc.py).
// No CUDA headers: fp16 values are raw 16-bit words converted with PTX cvt, so NVRTC needs no
// include path beyond this folder.
#include "async_copy.cuh"
#include "epilogue.cuh"

namespace wb_gemm_tc {

using namespace wb_async;


// not volatile: a pure function of its registers, so the compiler may interleave it with the next
// fragment loads (ldmatrix stays volatile: it reads shared memory and must not cross barriers)
__device__ __forceinline__ void mma_16816(float* c, const unsigned* a, const unsigned* b) {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ float half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned short float_to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;\n" : "=h"(h) : "f"(f));
    return h;
}

// two floats -> one 32-bit word of two halves, `lo` at the lower address
__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

struct __align__(8) float_pair { float x, y; };

// one out-of-line copy of the activation switch instead of one inlined per accumulator: the
// epilogue touches each output once, and NVRTC compiles the kernels several times faster
__device__ __noinline__ float activate(float x, int act, float p0, float p1) { return wb_activate(x, act, p0, p1); }

}  // namespace wb_gemm_tc

template <int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32)
gemm_tc(const unsigned short* __restrict__ A, const unsigned short* __restrict__ Bt,
        const float* __restrict__ bias, const void* __restrict__ residual, void* __restrict__ C,
        int M, int N, int K, float alpha, int act, float p0, float p1, int out_f32) {
    using namespace wb_gemm_tc;
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int LDS = BK + 8;                 // +16 bytes a row: ldmatrix rows hit distinct banks
    constexpr int TM = BM / WARPS_M, TN = BN / WARPS_N;
    constexpr int MI = TM / 16, NI = TN / 8;
    constexpr int CHUNKS_PER_ROW = BK / 8;      // 16-byte chunks of a tile row
    constexpr int A_CHUNKS = BM * CHUNKS_PER_ROW, B_CHUNKS = BN * CHUNKS_PER_ROW;
    static_assert(BK % 16 == 0 && TM % 16 == 0 && TN % 16 == 0, "warp tile must be whole 16x16 mma pairs");
    static_assert(A_CHUNKS % THREADS == 0 && B_CHUNKS % THREADS == 0, "tile loads must split evenly");
    static_assert(STAGES >= 2, "the cp.async ring needs two stages at least");

    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned short* sA = reinterpret_cast<unsigned short*>(smem_raw);
    unsigned short* sB = sA + STAGES * BM * LDS;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int KT = (K + BK - 1) / BK;

    auto load_tile = [&](int stage, int kt) {
        const int k0 = kt * BK;
        unsigned short* dA = sA + stage * BM * LDS;
        unsigned short* dB = sB + stage * BN * LDS;
#pragma unroll
        for (int i = 0; i < A_CHUNKS / THREADS; ++i) {
            const int c = tid + i * THREADS, row = c / CHUNKS_PER_ROW, kc = (c % CHUNKS_PER_ROW) * 8;
            const int gm = m0 + row, gk = k0 + kc;
            const bool ok = gm < M && gk < K;
            cp_async16(smem_u32(dA + row * LDS + kc), ok ? A + (size_t)gm * K + gk : A, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < B_CHUNKS / THREADS; ++i) {
            const int c = tid + i * THREADS, row = c / CHUNKS_PER_ROW, kc = (c % CHUNKS_PER_ROW) * 8;
            const int gn = n0 + row, gk = k0 + kc;
            const bool ok = gn < N && gk < K;
            cp_async16(smem_u32(dB + row * LDS + kc), ok ? Bt + (size_t)gn * K + gk : Bt, ok ? 16 : 0);
        }
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0.f;

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

        const unsigned short* tA = sA + (kt % STAGES) * BM * LDS;
        const unsigned short* tB = sB + (kt % STAGES) * BN * LDS;
        // fragments of step kk+1 load while the mma of step kk run (two register buffers)
        unsigned af[2][MI][4], bf[2][NI][2];
        auto load_fragments = [&](int buf, int kk) {
#pragma unroll
            for (int mi = 0; mi < MI; ++mi) {
                const int row = wm * TM + mi * 16 + (lane & 15), col = kk + (lane >> 4) * 8;
                ldmatrix_x4(smem_u32(tA + row * LDS + col), af[buf][mi][0], af[buf][mi][1], af[buf][mi][2],
                            af[buf][mi][3]);
            }
#pragma unroll
            for (int ni = 0; ni < NI; ni += 2) {
                const int row = wn * TN + ni * 8 + ((lane >> 4) << 3) + (lane & 7);
                const int col = kk + ((lane >> 3) & 1) * 8;
                ldmatrix_x4(smem_u32(tB + row * LDS + col), bf[buf][ni][0], bf[buf][ni][1], bf[buf][ni + 1][0],
                            bf[buf][ni + 1][1]);
            }
        };
        load_fragments(0, 0);
#pragma unroll
        for (int step = 0; step < BK / 16; ++step) {
            if (step + 1 < BK / 16) load_fragments((step + 1) & 1, (step + 1) * 16);
#pragma unroll
            for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) mma_16816(acc[mi][ni], af[step & 1][mi], bf[step & 1][ni]);
        }
    }
    cp_async_wait<0>();

    // epilogue: accumulator (row g or g+8, cols 2*t4, 2*t4+1) of each 16x8 tile
    const int g = lane >> 2, t4 = lane & 3;
    const bool pairs = (N & 1) == 0;            // even N: col even => col+1 < N, 4/8-byte aligned pairs
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const int col = n0 + wn * TN + ni * 8 + t4 * 2;
        if (col >= N) continue;
        const float b0 = bias ? bias[col] : 0.f;
        const float b1 = (bias && col + 1 < N) ? bias[col + 1] : 0.f;
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + wm * TM + mi * 16 + g + h * 8;
                if (row >= M) continue;
                float v0 = acc[mi][ni][2 * h] * alpha + b0, v1 = acc[mi][ni][2 * h + 1] * alpha + b1;
                const size_t idx = (size_t)row * N + col;
                if (pairs) {
                    if (residual) {
                        if (out_f32) {
                            const float* res = static_cast<const float*>(residual) + idx;
                            const float_pair r = *reinterpret_cast<const float_pair*>(res);
                            v0 += r.x;
                            v1 += r.y;
                        } else {
                            const unsigned short* res = static_cast<const unsigned short*>(residual) + idx;
                            const unsigned r = *reinterpret_cast<const unsigned*>(res);
                            v0 += half_to_float(static_cast<unsigned short>(r & 0xffffu));
                            v1 += half_to_float(static_cast<unsigned short>(r >> 16));
                        }
                    }
                    if (act) {
                        v0 = activate(v0, act, p0, p1);
                        v1 = activate(v1, act, p0, p1);
                    }
                    if (out_f32) {
                        float_pair o;
                        o.x = v0;
                        o.y = v1;
                        *reinterpret_cast<float_pair*>(static_cast<float*>(C) + idx) = o;
                    } else {
                        *reinterpret_cast<unsigned*>(static_cast<unsigned short*>(C) + idx) = pack_half2(v0, v1);
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        if (col + j >= N) continue;
                        float v = j ? v1 : v0;
                        if (residual)
                            v += out_f32 ? static_cast<const float*>(residual)[idx + j]
                                         : half_to_float(static_cast<const unsigned short*>(residual)[idx + j]);
                        if (act) v = activate(v, act, p0, p1);
                        if (out_f32) static_cast<float*>(C)[idx + j] = v;
                        else static_cast<unsigned short*>(C)[idx + j] = float_to_half(v);
                    }
                }
            }
        }
    }
}
