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
// Template: BM x BN tile, WARPS_M x WARPS_N warps, STAGES-deep ring, MIN_BLOCKS for __launch_bounds__,
// KEEP_W (below).

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

}  // namespace wb_qigemm

// Persistent blocks: block b takes tiles b, b + gridDim.x, ... (numbered along the output channels
// first, so the blocks that share an X tile run together). Its (tile, 64-channel step) pairs form one
// stream through the cp.async ring, so the next tile's X, W and residual are in flight while this
// tile's last step, epilogue and stores run: a memory-bound layer keeps DRAM busy instead of waiting
// once per tile; STAGES - 1 steps are in flight, which is what a memory-bound layer's bandwidth needs.
// KEEP_W (1x1 layers, whose weight rows are at most 256 bytes): the host makes the grid a multiple
// of the output-channel tiles, so all of a block's tiles have the same channels; their weight rows
// are staged once, with the first step, and stay. The ring then carries X and the residual only:
// half the bytes a step on L2 and a third fewer copy instructions (H100, b256: ResNet-50 layer3
// conv3 0.097 -> 0.090 ms, layer1.0 conv1 64 -> 64 channels 0.090 -> 0.049).
// Shared memory: OT residual/output tiles of BM x (BN + 16) bytes (tile i uses i % OT), then the
// ring of STAGES x (BM + BN) x LDS bytes (STAGES x BM x LDS with KEEP_W, then the kept weights,
// BN x LDW bytes).
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, int MIN_BLOCKS, int KEEP_W>
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
    // residual and output tiles move in passes of OUT_ROWS rows, each thread one 16-byte chunk a pass
    constexpr int OUT_ROWS = THREADS / OUT_CHUNKS, OUT_PASSES = BM / OUT_ROWS;
    static_assert(OUT_ROWS * OUT_CHUNKS == THREADS && OUT_PASSES * OUT_ROWS == BM, "even output passes");
    static_assert(TM % 16 == 0 && TN % 16 == 0, "a warp tile is whole m16 x (2 x n8) pieces");
    static_assert(STAGES >= 2, "a ring of two stages at least");
    static_assert(A_LOADS * THREADS == BM * ROW_CHUNKS && B_LOADS * THREADS == BN * ROW_CHUNKS, "even tile loads");

    extern __shared__ __align__(16) unsigned char smem[];
    signed char* sO = reinterpret_cast<signed char*>(smem);         // [OT][BM * LDO]
    const int CT = C / BK, KT = R * S * CT, row_len = R * S * C;   // ring steps a tile; bytes a W row
    const int OT = out_tiles(STAGES, KT);
    unsigned char* sA = smem + OT * BM * LDO;
    unsigned char* sB = sA + STAGES * BM * LDS;
    const int LDW = KEEP_W ? row_len + 16 : LDS;     // kept rows: row_len % 64 == 0, so 8 rows of an
                                                     // ldmatrix still land on distinct banks

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int n_tiles = N / BN, tiles = (M + BM - 1) / BM * n_tiles;
    const int my_tiles = (int)blockIdx.x < tiles ? (tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x : 0;
    const int steps = my_tiles * KT;
    // a pixel of A is the output pixel's own input pixel (m itself) only for unstrided, unpadded 1x1
    const bool gathered = stride_h != 1 || stride_w != 1 || R != 1 || S != 1 || pad_top != 0 || pad_left != 0;
    const int out_row = tid / OUT_CHUNKS, out_col = (tid % OUT_CHUNKS) * 16;   // this thread's chunk a pass
    const size_t out_pass = (size_t)OUT_ROWS * N;                              // bytes a pass advances

    // The copy cursor: the (tile, tap, channel step) issue() copies next. It advances one step a call,
    // so the only divisions are the ones that place a new tile's rows: the per-step divisions they
    // replace cost ~8 times the step's own MMAs on a 3x3 layer (ncu: 34 instructions an MMA).
    int i_lt = 0, i_kt = 0, i_r = 0, i_s = 0, i_c0 = 0, i_ot = 0, i_m0 = 0, i_n0 = 0;
    const signed char* a_pixel[A_LOADS];             // this thread's A rows: the input pixel under tap
    int a_h[A_LOADS], a_w[A_LOADS];                  // (0, 0) and its place, maybe in the padding
    auto place_tile = [&]() {
        const int tile = blockIdx.x + i_lt * gridDim.x, mt = tile / n_tiles;
        i_m0 = mt * BM;
        i_n0 = (tile - mt * n_tiles) * BN;
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) {
            const int m = i_m0 + (tid + i * THREADS) / ROW_CHUNKS;
            if (!gathered) {                         // the pixel is m: no divisions (a fifth of the
                a_h[i] = m < M ? 0 : -(1 << 30);     // instructions outside the epilogue, ncu)
                a_w[i] = 0;
                a_pixel[i] = X + (size_t)m * C;
                continue;
            }
            const int n = m / (P * Q), pq = m - n * (P * Q), p = pq / Q, q = pq - p * Q;
            a_h[i] = p * stride_h - pad_top;
            a_w[i] = q * stride_w - pad_left;
            a_pixel[i] = X + ((size_t)n * H * W + (ptrdiff_t)a_h[i] * W + a_w[i]) * C;   // read only in bounds
            if (m >= M) a_h[i] = -(1 << 30);         // a row past M reads as padding
        }
    };
    if (my_tiles) place_tile();

    // the copies of the cursor's step into ring slot `slot` (X and W of one tap's 64 channels, and with
    // a tile's first step its residual tile), then the cursor's advance
    auto issue = [&](int slot) {
        unsigned char* dA = sA + slot * BM * LDS;
        unsigned char* dB = sB + slot * BN * LDS;
        const int tap_offset = (i_r * W + i_s) * C + i_c0;
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) {
            const int chunk = tid + i * THREADS, row = chunk / ROW_CHUNKS, col = (chunk % ROW_CHUNKS) * 16;
            const int h = a_h[i] + i_r, w = a_w[i] + i_s;
            const bool in = (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;   // else zeros
            const signed char* src = a_pixel[i] + tap_offset + col;
            cp_async16(smem_u32(dA + row * LDS + col), in ? src : X, in ? 16 : 0);
        }
        const int k_offset = i_kt * BK;
#pragma unroll
        for (int i = 0; i < (KEEP_W ? 0 : B_LOADS); ++i) {
            const int chunk = tid + i * THREADS, row = chunk / ROW_CHUNKS, col = (chunk % ROW_CHUNKS) * 16;
            cp_async16(smem_u32(dB + row * LDS + col), Wt + (size_t)(i_n0 + row) * row_len + k_offset + col, 16);
        }
        if (Z && i_kt == 0) {
            const unsigned dO = smem_u32(sO + i_ot * BM * LDO + out_row * LDO + out_col);
            const signed char* src = Z + (size_t)(i_m0 + out_row) * N + i_n0 + out_col;
            const int rows_left = M - i_m0 - out_row;
#pragma unroll
            for (int k = 0; k < OUT_PASSES; ++k) {
                const bool ok = k * OUT_ROWS < rows_left;
                cp_async16(dO + k * OUT_ROWS * LDO, ok ? src + k * out_pass : Z, ok ? 16 : 0);
            }
        }
        if ((i_c0 += BK) == C) {                     // next tap, (r, s) in row-major order
            i_c0 = 0;
            if (++i_s == S) {
                i_s = 0;
                ++i_r;
            }
        }
        if (++i_kt == KT) {                          // next tile
            i_kt = i_r = 0;
            i_ot = i_ot + 1 == OT ? 0 : i_ot + 1;
            if (++i_lt < my_tiles) place_tile();
        }
    };

    int acc[MI][NI][4];                              // set by each tile's first k step

    if (KEEP_W && my_tiles) {                        // the kept weights: commit group 0, with step 0
        const int chunks = row_len / 16;
        for (int i = tid; i < BN * chunks; i += THREADS) {
            const int row = i / chunks, col = (i - row * chunks) * 16;
            cp_async16(smem_u32(sB + row * LDW + col), Wt + (size_t)(i_n0 + row) * row_len + col, 16);
        }
    }

    for (int s = 0; s < STAGES - 1; ++s) {           // prologue: STAGES - 1 groups, empty past the end
        if (s < steps) issue(s);                     // step s into slot s
        cp_async_commit();
    }
    int kt = 0, ot = 0, tile = blockIdx.x;           // the step computed: its k step, output tile, tile
    for (int s = 0; s < steps; ++s) {
        if (s + STAGES - 1 < steps) issue((s + STAGES - 1) % STAGES);   // the slot step s - 1 used
        cp_async_commit();
        cp_async_wait<STAGES - 1>();                 // all but the newest STAGES - 1 groups: step s landed
        __syncthreads();
        const unsigned char* tA = sA + (s % STAGES) * BM * LDS;
        const unsigned char* tB = KEEP_W ? sB + kt * BK : sB + (s % STAGES) * BN * LDS;
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
                ldmatrix_x4(smem_u32(tB + row * LDW + col), bf[ni][0], bf[ni][1], bf[ni + 1][0], bf[ni + 1][1]);
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
            const int mt = tile / n_tiles, m0 = mt * BM, n0 = (tile - mt * n_tiles) * BN;
            signed char* tO = sO + ot * BM * LDO;
            const Requant rq{zscale, alpha, lo, hi};
            requantize_fragments(acc, tO, LDO, wm * TM, wn * TN, mult + n0, bias + n0, rq, Z != nullptr, leaky != 0,
                                 lane);
            __syncthreads();
            signed char* dst = Y + (size_t)(m0 + out_row) * N + n0 + out_col;
            const signed char* src = tO + out_row * LDO + out_col;
            const int rows_left = M - m0 - out_row;
#pragma unroll
            for (int k = 0; k < OUT_PASSES; ++k)
                if (k * OUT_ROWS < rows_left)
                    *reinterpret_cast<int4*>(dst + k * out_pass) = *reinterpret_cast<const int4*>(src + k * OUT_ROWS * LDO);
        }
        if (++kt == KT) {
            kt = 0;
            ot = ot + 1 == OT ? 0 : ot + 1;
            tile += gridDim.x;
        }
        __syncthreads();                             // ring slot s % STAGES (and a stored tile) may be refilled
    }
    cp_async_wait<0>();
}
