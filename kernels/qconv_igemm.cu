// INT8 convolution (NHWC, group 1, any taps, stride and padding) as an implicit GEMM on the integer
// tensor cores (mma.sync m16n8k32), with the requantizing epilogue of workbench::FusedQConv, int8 in
// and int8 out:
//
//     Y[m, n] = int8( act( float(sum_j A[m, j] * W[n, j]) * M[n] + B[n] + float(Z[m, n]) * zscale ) )
//
// m is an output pixel (N*P*Q of them), j runs over the taps and channels in (r, s, c) order: the
// host lays the weight out as [K][R][S][C], and A[m, j] is the input pixel under tap (r, s) of
// output pixel m (zero in the padding). A ring step holds one tap's 64 channels. The 1x1 layers
// (ResNet-50's: 64..2048 channels) are memory bound, so the kernel is built around the bytes:
//   - the residual tile Z is prefetched with cp.async at the start, in flight with X and W, so a
//     block waits for DRAM once instead of twice;
//   - the epilogue finishes each fragment in registers and writes its int8 bytes into that same
//     residual tile in shared memory (each thread overwrites only the bytes it read), then the tile
//     leaves as 16-byte coalesced stores;
//   - blocks are persistent and pipeline across tiles (see below).
// X and W tiles are channel-contiguous byte rows, so non-transposed ldmatrix (a b16 pair = two
// adjacent channels) yields both A and B fragments (int8_mma.cuh has the fragment layouts). The
// float epilogue is the CPU emulation's (cpu/ops/fused_conv.py fused_qconv), each op rounded to
// float32, no contraction, with int8_mma.cuh's one clamp for the activation and the saturation.
// Sums convert with __int2float_rn: on sm_90 that is one I2FP instruction, exact for any int32. bias is
// always given (zeros for a layer without one: adding +0 changes no int8 result).
// Needs C % 64 == 0 and (output channels) % BN == 0; rows past M are zero-filled and not stored.
// Template: BM x BN tile, WARPS_M x WARPS_N warps, STAGES-deep ring, MIN_BLOCKS for __launch_bounds__.

#include "async_copy.cuh"
#include "int8_mma.cuh"

namespace wb_qigemm {

using namespace wb_async;
using namespace wb_int8;

constexpr int BK = 64;          // channels a ring stage holds
constexpr int LDS = BK + 16;    // bytes a smem row: the 8 rows of an ldmatrix land on distinct banks

// Residual/output tiles: tile j's residual is copied with its first step, STAGES - 1 steps ahead, into
// the tile that tile j - OT used, which must be stored by then: (OT - 1) * KT >= STAGES - 1.
// (workbench/backends/cuda/tactics/qconv_igemm.py sizes shared memory with the same formula.)
__host__ __device__ constexpr int out_tiles(int stages, int kt) {
    return 1 + (stages - 1 + kt - 1) / kt < stages ? 1 + (stages - 1 + kt - 1) / kt : stages;
}

template <bool B>
struct flag { static constexpr bool value = B; };
constexpr flag<true> yes{};
constexpr flag<false> no{};

}  // namespace wb_qigemm

// Persistent blocks: block b takes tiles b, b + gridDim.x, ... (numbered along the output channels
// first, so the blocks that share an X tile run together). Its (tile, 64-channel step) pairs form one
// stream through the cp.async ring, so the next tile's X, W and residual are in flight while this
// tile's last step, epilogue and stores run: a memory-bound layer keeps DRAM busy instead of waiting
// once per tile; STAGES - 1 steps are in flight, which is what a memory-bound layer's bandwidth needs.
// Shared memory: OT residual/output tiles of BM x (BN + 16) bytes (tile i uses i % OT), then the
// ring of STAGES x (BM + BN) x LDS bytes.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, int MIN_BLOCKS>
__global__ void __launch_bounds__(WARPS_M * WARPS_N * 32, MIN_BLOCKS)
qconv_igemm(const signed char* __restrict__ X, const signed char* __restrict__ Wt, const float* __restrict__ mult,
            const float* __restrict__ bias, const signed char* __restrict__ Z, signed char* __restrict__ Y,
            int M, int N, int C, int H, int W, int P, int Q, int stride_h, int stride_w,
            int R, int S, int pad_top, int pad_left, float zscale, int leaky, float alpha, float lo, float hi) {
    using namespace wb_qigemm;
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int TM = BM / WARPS_M, TN = BN / WARPS_N, MI = TM / 16, NI = TN / 8;
    constexpr int LDO = BN + 16;                     // output tile row: fragment writes spread over banks
    constexpr int ROW_CHUNKS = BK / 16, OUT_CHUNKS = BN / 16;
    constexpr int A_LOADS = BM * ROW_CHUNKS / THREADS, B_LOADS = BN * ROW_CHUNKS / THREADS;
    static_assert(TM % 16 == 0 && TN % 16 == 0, "a warp tile is whole m16 x (2 x n8) pieces");
    static_assert(STAGES >= 2, "a ring of two stages at least");
    static_assert(A_LOADS * THREADS == BM * ROW_CHUNKS && B_LOADS * THREADS == BN * ROW_CHUNKS, "even tile loads");

    extern __shared__ __align__(16) unsigned char smem[];
    signed char* sO = reinterpret_cast<signed char*>(smem);         // [OT][BM * LDO]
    const int CT = C / BK, KT = R * S * CT, row_len = R * S * C;   // ring steps a tile; bytes a W row
    const int OT = out_tiles(STAGES, KT);
    unsigned char* sA = smem + OT * BM * LDO;
    unsigned char* sB = sA + STAGES * BM * LDS;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int n_tiles = N / BN, tiles = (M + BM - 1) / BM * n_tiles;
    const int my_tiles = (int)blockIdx.x < tiles ? (tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x : 0;
    const int steps = my_tiles * KT;
    // a pixel of A is the output pixel's own input pixel (m itself) only for unstrided, unpadded 1x1
    const bool gathered = stride_h != 1 || stride_w != 1 || R != 1 || S != 1 || pad_top != 0 || pad_left != 0;

    // the copies of step s: X and W of one tap's 64 channels into ring slot s % STAGES, and with a
    // tile's first step its residual tile
    auto issue = [&](int s) {
        const int lt = s / KT, kt = s - lt * KT;
        const int tile = blockIdx.x + lt * gridDim.x;
        const int m0 = (tile / n_tiles) * BM, n0 = (tile % n_tiles) * BN;
        const int tap = kt / CT, c0 = (kt - tap * CT) * BK, r = tap / S, s_ = tap - r * S;
        unsigned char* dA = sA + (s % STAGES) * BM * LDS;
        unsigned char* dB = sB + (s % STAGES) * BN * LDS;
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) {
            const int chunk = tid + i * THREADS, row = chunk / ROW_CHUNKS, col = (chunk % ROW_CHUNKS) * 16;
            const int m = m0 + row;
            bool in = m < M;
            size_t pixel = m;
            if (gathered && in) {
                const int n = m / (P * Q), pq = m - n * (P * Q), p = pq / Q, q = pq - p * Q;
                const int h = p * stride_h + r - pad_top, w = q * stride_w + s_ - pad_left;
                in = h >= 0 && h < H && w >= 0 && w < W;                 // else padding: zeros
                pixel = ((size_t)n * H + h) * W + w;
            }
            cp_async16(smem_u32(dA + row * LDS + col), in ? X + pixel * C + c0 + col : X, in ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < B_LOADS; ++i) {
            const int chunk = tid + i * THREADS, row = chunk / ROW_CHUNKS, col = (chunk % ROW_CHUNKS) * 16;
            cp_async16(smem_u32(dB + row * LDS + col), Wt + (size_t)(n0 + row) * row_len + kt * BK + col, 16);
        }
        if (Z && kt == 0) {
            signed char* dO = sO + (lt % OT) * BM * LDO;
            for (int i = tid; i < BM * OUT_CHUNKS; i += THREADS) {
                const int row = i / OUT_CHUNKS, col = (i % OUT_CHUNKS) * 16;
                const bool ok = m0 + row < M;
                cp_async16(smem_u32(dO + row * LDO + col), ok ? Z + (size_t)(m0 + row) * N + n0 + col : Z, ok ? 16 : 0);
            }
        }
    };

    int acc[MI][NI][4];                              // set by each tile's first k step

    for (int s = 0; s < STAGES - 1; ++s) {           // prologue: STAGES - 1 groups, empty past the end
        if (s < steps) issue(s);
        cp_async_commit();
    }
    const int g = lane >> 2, t = lane & 3;
    for (int s = 0; s < steps; ++s) {
        if (s + STAGES - 1 < steps) issue(s + STAGES - 1);   // the slot step s - 1 used
        cp_async_commit();
        cp_async_wait<STAGES - 1>();                 // all but the newest STAGES - 1 groups: step s landed
        __syncthreads();
        const int lt = s / KT, kt = s - lt * KT;
        const unsigned char* tA = sA + (s % STAGES) * BM * LDS;
        const unsigned char* tB = sB + (s % STAGES) * BN * LDS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 32) {
            unsigned af[MI][4], bf[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; ++mi) {  // matrices (rows 0-7, k 0-15) (8-15, 0-15) (0-7, 16-31) (8-15, 16-31)
                const int row = wm * TM + mi * 16 + (lane & 15), col = kk + (lane >> 4) * 16;
                ldmatrix_x4(smem_u32(tA + row * LDS + col), af[mi][0], af[mi][1], af[mi][2], af[mi][3]);
            }
#pragma unroll
            for (int ni = 0; ni < NI; ni += 2) {  // matrices (n 0-7, k 0-15) (0-7, 16-31) (8-15, 0-15) (8-15, 16-31)
                const int row = wn * TN + ni * 8 + ((lane >> 4) << 3) + (lane & 7);
                const int col = kk + ((lane >> 3) & 1) * 16;
                ldmatrix_x4(smem_u32(tB + row * LDS + col), bf[ni][0], bf[ni][1], bf[ni + 1][0], bf[ni + 1][1]);
            }
#pragma unroll
            for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) {
                    if (kk == 0 && kt == 0) mma_16832_first(acc[mi][ni], af[mi], bf[ni]);  // a new tile's sums
                    else mma_16832(acc[mi][ni], af[mi], bf[ni]);
                }
        }
        if (kt == KT - 1) {                          // the tile's last step: epilogue, then store it
            const int tile = blockIdx.x + lt * gridDim.x;
            const int m0 = (tile / n_tiles) * BM, n0 = (tile % n_tiles) * BN;
            signed char* tO = sO + (lt % OT) * BM * LDO;
            // the flags are compile-time in each of the epilogue's forms: a per-fragment branch on them
            // cost as many instructions as the arithmetic
            auto finish = [&](auto residual, auto leaky_relu) {
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) {
                    const int col = wn * TN + ni * 8 + 2 * t;
                    const float2 mv = __ldg(reinterpret_cast<const float2*>(mult + n0 + col));
                    const float2 bv = __ldg(reinterpret_cast<const float2*>(bias + n0 + col));
#pragma unroll
                    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            unsigned short* o =
                                reinterpret_cast<unsigned short*>(tO + (wm * TM + mi * 16 + g + 8 * h) * LDO + col);
                            const int* a = &acc[mi][ni][2 * h];
                            float v0 = __int2float_rn(a[0]);
                            float v1 = __int2float_rn(a[1]);
                            v0 = __fadd_rn(__fmul_rn(v0, mv.x), bv.x);
                            v1 = __fadd_rn(__fmul_rn(v1, mv.y), bv.y);
                            if (residual.value) {    // the residual bytes this thread alone reads, then overwrites
                                const float2 z = int8_pair_to_float(*o);
                                v0 = __fadd_rn(v0, __fmul_rn(z.x, zscale));
                                v1 = __fadd_rn(v1, __fmul_rn(z.y, zscale));
                            }
                            if (leaky_relu.value) {
                                v0 = v0 < 0.f ? __fmul_rn(v0, alpha) : v0;
                                v1 = v1 < 0.f ? __fmul_rn(v1, alpha) : v1;
                            }
                            *o = int8_pair(v0, v1, lo, hi);
                        }
                }
            };
            if (Z) leaky ? finish(yes, yes) : finish(yes, no);
            else leaky ? finish(no, yes) : finish(no, no);
            __syncthreads();
            for (int i = tid; i < BM * OUT_CHUNKS; i += THREADS) {
                const int row = i / OUT_CHUNKS, col = (i % OUT_CHUNKS) * 16;
                if (m0 + row < M)
                    *reinterpret_cast<int4*>(Y + (size_t)(m0 + row) * N + n0 + col) =
                        *reinterpret_cast<const int4*>(tO + row * LDO + col);
            }
        }
        __syncthreads();                             // ring slot s % STAGES (and a stored tile) may be refilled
    }
    cp_async_wait<0>();
}
