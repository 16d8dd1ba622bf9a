// INT8 direct convolution for few input channels (an image stem: 7x7, 3 channels, 64 outputs), NHWC,
// with FusedQConv's requantizing epilogue, int8 in and out, on the CUDA cores' 4-way int8 dot
// product (dp4a). Why not tensor cores: with C = 3 a tap row is 21 bytes, which neither cuDNN's int8
// kernels (C % 4) nor an MMA tile take without padding the input 5x; cuDNN's fp16 form with an int8
// output ran this layer 5x slower than the fp16 network's own stem.
//
// One block: blockDim.y output rows of image n, blockDim.x output columns, one thread per output
// pixel with all K channels in registers. The input rows the block reads (R + (blockDim.y - 1) *
// stride: neighbouring output rows share most of theirs) are staged in shared memory with the
// padding as zeros; a thread's S*C bytes of a tap row start at an arbitrary byte, so it reads
// WORDS + 1 aligned words and realigns them with funnel shifts. Weights are packed on the host as
// [R][K][8] words (S*C bytes zero-padded): the bytes past S*C multiply neighbouring pixels' data by 0.
// Epilogue as the CPU emulation (cpu/ops/fused_conv.py fused_qconv): float32 ops in order, no
// contraction, rint and saturate, NaN -> 0.
#include "epilogue.cuh"

template <int R, int S, int C, int K>
__global__ void __launch_bounds__(512)
qconv_stem(const signed char* __restrict__ X, const int* __restrict__ Wp, const float* __restrict__ mult,
           const float* __restrict__ bias, signed char* __restrict__ Y, int H, int W, int P, int Q,
           int stride_h, int stride_w, int pad_top, int pad_left, int act, float p0, float p1) {
    constexpr int WORDS = (S * C + 3) / 4;          // words of one tap row's bytes
    constexpr int WSTRIDE = 8;                      // packed words per (r, k): two 16-byte loads
    static_assert(WORDS + 1 <= WSTRIDE + 1 && WORDS <= WSTRIDE, "a tap row must fit 8 words");
    static_assert(K % 16 == 0, "16-byte output stores");
    extern __shared__ __align__(16) int smem_words[];
    int* sW = smem_words;                           // [R][K][WSTRIDE]
    unsigned char* sX = reinterpret_cast<unsigned char*>(sW + R * K * WSTRIDE);

    const int n = blockIdx.z, p_first = blockIdx.y * blockDim.y, q0 = blockIdx.x * blockDim.x;
    const int span = (blockDim.x - 1) * stride_w + S;              // input columns the block reads
    const int row_bytes = ((span * C + 8) + 15) & ~15;             // + slack for the realigning over-read
    const int rows = R + (blockDim.y - 1) * stride_h;              // input rows the block reads
    const int w0 = q0 * stride_w - pad_left, h0 = p_first * stride_h - pad_top;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x, threads = blockDim.x * blockDim.y;

    for (int i = tid; i < R * K * WSTRIDE; i += threads) sW[i] = __ldg(Wp + i);
    for (int r = threadIdx.y; r < rows; r += blockDim.y) {
        const int h = h0 + r;
        const bool row_in = h >= 0 && h < H;
        const signed char* src = X + ((size_t)n * H + (row_in ? h : 0)) * W * C;
        for (int b = threadIdx.x; b < row_bytes; b += blockDim.x) {
            const int w = w0 + b / C;
            const bool in = row_in && b < span * C && w >= 0 && w < W;
            sX[r * row_bytes + b] = in ? static_cast<unsigned char>(src[w * C + b % C]) : 0;
        }
    }
    __syncthreads();

    const int p = p_first + threadIdx.y, q = q0 + threadIdx.x;
    if (p >= P || q >= Q) return;
    int acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0;
    const int offset = threadIdx.x * stride_w * C;                 // this pixel's first byte in a row
    const int shift = (offset & 3) * 8;
#pragma unroll 1
    for (int r = 0; r < R; ++r) {
        const int* row = reinterpret_cast<const int*>(sX + (threadIdx.y * stride_h + r) * row_bytes + (offset & ~3));
        int x[WORDS];
#pragma unroll
        for (int i = 0; i < WORDS; ++i) x[i] = __funnelshift_r(row[i], row[i + 1], shift);
        const int4* wr = reinterpret_cast<const int4*>(sW + r * K * WSTRIDE);
#pragma unroll
        for (int k = 0; k < K; ++k) {
            const int4 a = wr[2 * k], b = wr[2 * k + 1];             // the same address in every thread
            const int wk[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < WORDS; ++i) acc[k] = __dp4a(x[i], wk[i], acc[k]);
        }
    }

    unsigned out[K / 4];
#pragma unroll
    for (int k = 0; k < K; ++k) {
        float v = __fmul_rn(__int2float_rn(acc[k]), __ldg(mult + k));
        if (bias) v = __fadd_rn(v, __ldg(bias + k));
        v = wb_activate(v, act, p0, p1);
        const unsigned byte = static_cast<unsigned>(min(max(__float2int_rn(v), -128), 127)) & 0xffu;
        if (k % 4 == 0) out[k / 4] = byte;
        else out[k / 4] |= byte << (8 * (k % 4));
    }
    uint4* dst = reinterpret_cast<uint4*>(Y + (((size_t)n * P + p) * Q + q) * K);
#pragma unroll
    for (int i = 0; i < K / 16; ++i) dst[i] = make_uint4(out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]);
}
