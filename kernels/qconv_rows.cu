// INT8 convolution of 64-channel NHWC input, stride 1, R x S taps (ResNet's and VGG's 3x3 layers on 64
// channels), on the integer tensor cores (mma.sync m16n8k32), with workbench::FusedQConv's
// requantizing epilogue (int8_mma.cuh requantize_pair), int8 in and int8 out.
//
// Why not qconv_igemm.cu: there a ring step is one tap's 64 channels gathered from global memory, so a
// 3x3 layer reads each input pixel 9 times through L2 and pays a barrier per tap. Here a block stages
// the input rows a tile of output pixels needs (TP + R - 1 rows of TQ + S - 1 pixels, halo included,
// zeros outside the image) in shared memory once, and every tap's A fragments come from that stage:
// pixel (p, q) under tap (r, s) is staged pixel (p + r, q + s), so ldmatrix's per-lane row addresses
// do the im2col. The block's 64 output channels' weights stay in shared memory for all its tiles.
//
// Blocks are persistent over the tiles of one 64-channel output block (blockIdx.y); tile t + 1's
// input and residual are copied (cp.async) while tile t computes. A tile is TP x TQ output pixels,
// two m16 fragments a warp; pixels past the image's edge are computed on zeros and not stored.
// ldmatrix's 8 row addresses fall on distinct banks: staged pixels are 80-byte rows (64 channels and
// 16 bytes of padding), so a tap's offset is a constant; weight rows (one output channel's 64 bytes of a
// tap) are swizzled, which leaves a lane two row bases (one a k32 half) and a constant per tap.
// The output tile is single: with a residual, tile t + 1's residual is copied once tile t is stored.

#include "async_copy.cuh"
#include "int8_mma.cuh"

namespace wb_qrows {

constexpr int C = 64;            // input channels: a staged pixel is one 64-byte row
constexpr int BN = 64;           // output channels a block
constexpr int LDX = C + 16;      // bytes a staged pixel: 8 consecutive pixels' 16-byte chunks on distinct banks
constexpr int LDO = BN + 16;     // bytes an output tile row: fragment writes spread over banks

// byte offset of 16-byte chunk c of 64-byte weight row j: rows 2i and 2i + 1 share a 128-byte line,
// so chunk c of 8 consecutive rows lands on 8 distinct bank groups when xor-ed with (j / 2) % 4
__device__ __forceinline__ int swizzled(int j, int c) { return j * 64 + ((c ^ ((j >> 1) & 3)) << 4); }

}  // namespace wb_qrows

template <int R, int S, int TP, int TQ, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, 2)
qconv_rows(const signed char* __restrict__ X, const signed char* __restrict__ Wt, const float* __restrict__ mult,
           const float* __restrict__ bias, const signed char* __restrict__ Z, signed char* __restrict__ Y,
           int images, int H, int W, int P, int Q, int K, int pad_top, int pad_left,
           float zscale, int leaky, float alpha, float lo, float hi) {
    using namespace wb_async;
    using namespace wb_int8;
    using namespace wb_qrows;
    constexpr int THREADS = WARPS * 32, PIX = TP * TQ, MI = 2, NI = BN / 8;
    constexpr int SW = TQ + S - 1, STAGED = (TP + R - 1) * SW;      // staged pixels: a row, a tile
    static_assert(PIX == WARPS * 16 * MI, "a tile is two m16 fragments a warp");

    extern __shared__ __align__(16) unsigned char smem[];
    unsigned char* sW = smem;                                // [R * S * BN] weight rows (tap, n)
    unsigned char* sX = sW + R * S * BN * 64;                // [2][STAGED * LDX] staged input pixels
    signed char* sO = reinterpret_cast<signed char*>(sX + 2 * STAGED * LDX);  // [PIX * LDO]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n0 = blockIdx.y * BN;
    const int tiles_q = (Q + TQ - 1) / TQ, tiles_p = (P + TP - 1) / TP, tiles = images * tiles_p * tiles_q;

    // the block's weights, [K][R][S][C] in global memory, once (in the first tile's commit group)
    for (int i = tid; i < R * S * BN * 4; i += THREADS) {
        const int row = i >> 2, tap = row / BN, n = row % BN;
        cp_async16(smem_u32(sW + swizzled(row, i & 3)), Wt + ((size_t)(n0 + n) * (R * S) + tap) * C + (i & 3) * 16, 16);
    }
    struct Place { int image, p0, q0; };
    auto place = [&](int tile) {
        const int tq = tile % tiles_q, rest = tile / tiles_q, tp = rest % tiles_p;
        return Place{rest / tiles_p, tp * TP, tq * TQ};
    };
    // a tile's staged input (zeros outside the image)
    auto load_input = [&](int tile, int buf) {
        const Place at = place(tile);
        unsigned char* dX = sX + buf * STAGED * LDX;
        for (int i = tid; i < STAGED * 4; i += THREADS) {
            const int j = i >> 2, sr = j / SW, h = at.p0 - pad_top + sr, w = at.q0 - pad_left + (j - sr * SW);
            const bool in = (unsigned)h < (unsigned)H && (unsigned)w < (unsigned)W;
            const signed char* src = X + (((size_t)at.image * H + h) * W + w) * C + (i & 3) * 16;
            cp_async16(smem_u32(dX + j * LDX + (i & 3) * 16), in ? src : X, in ? 16 : 0);
        }
    };
    auto load_residual = [&](int tile) {
        const Place at = place(tile);
        for (int i = tid; i < PIX * 4; i += THREADS) {
            const int pix = i >> 2, p = at.p0 + pix / TQ, q = at.q0 + pix % TQ;
            const bool ok = p < P && q < Q;
            const signed char* src = Z + (((size_t)at.image * P + p) * Q + q) * K + n0 + (i & 3) * 16;
            cp_async16(smem_u32(sO + pix * LDO + (i & 3) * 16), ok ? src : Z, ok ? 16 : 0);
        }
    };

    // this lane's A rows: the staged pixel under tap (0, 0) of output pixel (lane % 16) of each
    // fragment, at its k half's chunk; its B rows' bases, one a k32 half (a tap adds a constant)
    int a_offset[MI];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
        const int pix = warp * 32 + mi * 16 + (lane & 15);
        a_offset[mi] = (pix / TQ * SW + pix % TQ) * LDX + (lane >> 4) * 16;
    }
    const int b_row = ((lane >> 4) << 3) + (lane & 7);
    const unsigned b_base[2] = {smem_u32(sW + swizzled(b_row, (lane >> 3) & 1)),
                                smem_u32(sW + swizzled(b_row, 2 + ((lane >> 3) & 1)))};
    const Requant rq{zscale, alpha, lo, hi};

    int buf = 0;
    if ((int)blockIdx.x < tiles) {
        load_input(blockIdx.x, 0);
        if (Z) load_residual(blockIdx.x);
    }
    cp_async_commit();
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, buf ^= 1) {
        cp_async_wait<0>();                          // this tile's input (and residual) landed
        __syncthreads();                             // ... for all threads; the other input buffer is free
        const int next = tile + gridDim.x;
        if (next < tiles) load_input(next, buf ^ 1);
        cp_async_commit();

        const unsigned tX = smem_u32(sX + buf * STAGED * LDX);
        int acc[MI][NI][4];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int s = 0; s < S; ++s)
#pragma unroll
                for (int kk = 0; kk < C; kk += 32) {
                    unsigned af[MI][4], bf[NI][2];
#pragma unroll
                    for (int mi = 0; mi < MI; ++mi)   // (rows 0-7, k 0-15) (8-15, 0-15) (0-7, 16-31) (8-15, 16-31)
                        ldmatrix_x4(tX + a_offset[mi] + (r * SW + s) * LDX + kk,
                                    af[mi][0], af[mi][1], af[mi][2], af[mi][3]);
#pragma unroll
                    for (int ni = 0; ni < NI; ni += 2) {  // (n 0-7, k 0-15) (0-7, 16-31) (8-15, 0-15) (8-15, 16-31)
                        // rows (tap, n) and (tap, n) + 8i share a swizzle: a constant offset from the base
                        ldmatrix_x4(b_base[kk / 32] + ((r * S + s) * BN + ni * 8) * 64,
                                    bf[ni][0], bf[ni][1], bf[ni + 1][0], bf[ni + 1][1]);
                    }
#pragma unroll
                    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                        for (int ni = 0; ni < NI; ++ni) {
                            if (r == 0 && s == 0 && kk == 0) mma_16832_first(acc[mi][ni], af[mi], bf[ni]);
                            else mma_16832(acc[mi][ni], af[mi], bf[ni]);
                        }
                }

        requantize_fragments(acc, sO, LDO, warp * 32, 0, mult + n0, bias + n0, rq, Z != nullptr, leaky != 0, lane);
        __syncthreads();
        const Place at = place(tile);
        for (int i = tid; i < PIX * 4; i += THREADS) {
            const int pix = i >> 2, p = at.p0 + pix / TQ, q = at.q0 + pix % TQ;
            if (p < P && q < Q)
                *reinterpret_cast<int4*>(Y + (((size_t)at.image * P + p) * Q + q) * K + n0 + (i & 3) * 16) =
                    *reinterpret_cast<const int4*>(sO + pix * LDO + (i & 3) * 16);
        }
        if (Z && next < tiles) {                     // the next tile's residual, once this one is stored
            __syncthreads();
            load_residual(next);
            cp_async_commit();
        }
    }
    cp_async_wait<0>();
}
