// INT8 convolution for few input channels (an image stem: 7x7, 3 channels, 64 outputs), NHWC, with
// FusedQConv's requantizing epilogue, int8 in and out, on the integer tensor cores (mma.sync m16n8k32)
// as an implicit GEMM whose reduction runs over one tap row at a time:
//
//     acc[pixel, k] = sum_r sum_{j < 32} A_r[pixel, j] * B_r[j, k]
//
// A_r[pixel, j] is byte j of the input from the pixel's first tap of filter row r on: in NHWC the S*C
// bytes of a tap row are contiguous, so A_r is a 32-byte window of a staged input row; the weights
// B_r are zero past S*C, so the window's last 32 - S*C bytes (the neighbours' data) add nothing.
// Why not cuDNN: its int8 kernels want C % 4 == 0, and padding the input to 4 channels costs a pass
// over it; its fp16 form with an int8 output ran this layer 5x slower than the fp16 network's stem.
//
// One block: TR output rows of image n by TQ output columns (TQ % 16 == 0), 8 warps; a warp takes
// 16 pixels of one output row (an m16 tile) at a time, all K channels. The input rows the block reads
// (R + (TR - 1) * stride: neighbouring output rows share most of theirs) are staged in shared memory
// whole, from the 16-byte boundary at or before the block's first column, with padding as zeros; a
// pixel's window starts at an arbitrary byte, so a thread reads aligned words and realigns them with
// funnel shifts. Weights are packed on the host in fragment order, [R][K/8][lane][2] words, one 8-byte
// load a fragment. The epilogue (the CPU emulation's, cpu/ops/fused_conv.py fused_qconv) writes its
// bytes into a per-warp tile in shared memory that leaves as 16-byte coalesced stores. bias is always
// given (zeros for a layer without one: adding +0 changes no int8 result).
#include "async_copy.cuh"
#include "int8_mma.cuh"

namespace wb_stem {
constexpr int WARPS = 8;
}  // namespace wb_stem

template <int R, int S, int C, int K>
__global__ void __launch_bounds__(wb_stem::WARPS * 32)
qconv_stem(const signed char* __restrict__ X, const uint2* __restrict__ Wf, const float* __restrict__ mult,
           const float* __restrict__ bias, signed char* __restrict__ Y, int H, int W, int P, int Q,
           int stride_h, int stride_w, int pad_top, int pad_left, int TR, int TQ,
           int leaky, float alpha, float lo, float hi) {
    using namespace wb_async;
    using namespace wb_int8;
    constexpr int NT = K / 8;                       // n8 tiles
    constexpr int LDO = K + 16;                     // output tile row: fragment writes spread over banks
    static_assert(S * C <= 32, "a tap row must fit one k32 step");
    static_assert(K % 16 == 0, "16-byte output stores");
    extern __shared__ __align__(16) unsigned char smem[];
    uint2* sW = reinterpret_cast<uint2*>(smem);                         // [R][NT][32]
    signed char* sO = reinterpret_cast<signed char*>(smem + R * NT * 32 * sizeof(uint2));  // [WARPS][16][LDO]
    unsigned char* sX = reinterpret_cast<unsigned char*>(sO + wb_stem::WARPS * 16 * LDO);

    const int n = blockIdx.z, p0 = blockIdx.y * TR, q0 = blockIdx.x * TQ;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int w0 = q0 * stride_w - pad_left, h0 = p0 * stride_h - pad_top;
    // staged bytes of a row: from the 16-byte boundary at or before column w0 to past the last
    // window's 32 bytes, realigning over-read included; row_bytes % 16 == 0
    const int g_first = (w0 * C) >> 4 << 4;         // floor to 16, also for negative w0
    const int first = w0 * C - g_first;             // the block's first window in a staged row
    const int row_bytes = ((first + (TQ - 1) * stride_w * C + 36) + 15) & ~15;
    const int rows = R + (TR - 1) * stride_h;
    const int row_len = W * C;
    const bool aligned16 = row_len % 16 == 0 && (reinterpret_cast<size_t>(X) & 15) == 0;

    for (int i = tid; i < R * NT * 32; i += blockDim.x) sW[i] = __ldg(Wf + i);
    const int chunks = row_bytes / 16;
    for (int i = tid; i < rows * chunks; i += blockDim.x) {
        const int r = i / chunks, b = g_first + (i - r * chunks) * 16;   // the chunk's byte in its row
        const int h = h0 + r;
        const bool row_in = h >= 0 && h < H;
        const signed char* src = X + ((size_t)n * H + (row_in ? h : 0)) * row_len;
        unsigned char* dst = sX + r * row_bytes + (b - g_first);
        if (aligned16 || !row_in || b + 16 <= 0 || b >= row_len) {      // whole: copied or zeros
            const bool in = row_in && b >= 0 && b + 16 <= row_len;
            cp_async16(smem_u32(dst), in ? src + b : X, in ? 16 : 0);
        } else {                                                        // a row edge inside the chunk
            for (int j = 0; j < 16; ++j)
                dst[j] = b + j >= 0 && b + j < row_len ? static_cast<unsigned char>(src[b + j]) : 0;
        }
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    const int g = lane >> 2, t = lane & 3;
    const int tiles_per_row = TQ / 16;
    signed char* tO = sO + warp * 16 * LDO;
    for (int tile = warp; tile < TR * tiles_per_row; tile += wb_stem::WARPS) {
        const int pr = tile / tiles_per_row, qb = (tile - pr * tiles_per_row) * 16;
        int acc[1][NT][4];                          // one m16 fragment row; set by filter row 0's MMAs
        // byte offsets of the windows of pixels g and g + 8 in a staged row
        const int off_lo = first + (qb + g) * stride_w * C, off_hi = off_lo + 8 * stride_w * C;
        const int sh_lo = (off_lo & 3) * 8, sh_hi = (off_hi & 3) * 8;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const unsigned char* row = sX + (pr * stride_h + r) * row_bytes;
            const unsigned* wl = reinterpret_cast<const unsigned*>(row + (off_lo & ~3)) + t;
            const unsigned* wh = reinterpret_cast<const unsigned*>(row + (off_hi & ~3)) + t;
            unsigned a[4];
            a[0] = __funnelshift_r(wl[0], wl[1], sh_lo);
            a[1] = __funnelshift_r(wh[0], wh[1], sh_hi);
            a[2] = __funnelshift_r(wl[4], wl[5], sh_lo);
            a[3] = __funnelshift_r(wh[4], wh[5], sh_hi);
            const uint2* wr = sW + r * NT * 32 + lane;
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const uint2 bw = wr[j * 32];
                const unsigned b[2] = {bw.x, bw.y};
                if (r == 0) mma_16832_first(acc[0][j], a, b);
                else mma_16832(acc[0][j], a, b);
            }
        }
        requantize_fragments(acc, tO, LDO, 0, 0, mult, bias, Requant{0.f, alpha, lo, hi}, false, leaky != 0, lane);
        __syncwarp();
        const int p = p0 + pr;
        constexpr int PIXEL_CHUNKS = K / 16;
        for (int i = lane; i < 16 * PIXEL_CHUNKS; i += 32) {
            const int px = i / PIXEL_CHUNKS, c16 = (i - px * PIXEL_CHUNKS) * 16, q = q0 + qb + px;
            if (p < P && q < Q)
                *reinterpret_cast<int4*>(Y + (((size_t)n * P + p) * Q + q) * K + c16) =
                    *reinterpret_cast<const int4*>(tO + px * LDO + c16);
        }
        __syncwarp();
    }
}
