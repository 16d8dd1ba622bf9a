// Fused attention (FlashAttention-2 style forward), fp16 in/out, fp32 accumulation and softmax:
//   O = softmax(scale * Q K^T + mask) V      per (batch, head), never materializing the scores.
// A block of WARPS warps owns 16 * WARPS query rows (16 per warp); it walks the keys in tiles of BC
// (64, or 128: one tile for BERT's 128 tokens, no rescaling, one barrier pair) staged in shared memory, computes S = Q K^T with mma.sync m16n8k16, keeps a running row max and sum
// (online softmax) and accumulates P V in registers; P goes from the S accumulators straight into
// A fragments (same thread owns the same elements). Q, K, V, O are [B0, B1, S, D] with any element
// strides (B0, B1, row) and contiguous D: [B, H, S, D] tensors, or [B, S, H, D] projections read
// in place (a head is a column block); K may be [.., D, Sk] (K_T, its row stride between dims).
// The mask broadcasts over [B0, B1, Sq, Sk] through element strides (0 where it broadcasts).
// Partial tiles: rows past Sq are clamped on load and not stored, keys past Sk get -inf scores. The softmax runs in base 2 (scores times log2 e, exp2f). Shared-memory rows are
// padded by 8 halves (16 B) so ldmatrix and the 32-bit fragment loads are free of bank conflicts.
// A mask that is the same for every query row (BERT's [B, 1, 1, Sk]) is staged per key tile. (Staging
// a full [B, 1, Sq, Sk] mask tile the same way measured slower on BERT-base: the per-thread loads
// it replaces hit L1/L2 anyway.)
#include <cuda_fp16.h>

#define WB_NEG_INF __int_as_float(0xff800000)

template <typename TM> __device__ __forceinline__ float wb_mask(const TM* p) { return static_cast<float>(*p); }
template <> __device__ __forceinline__ float wb_mask<__half>(const __half* p) { return __half2float(*p); }

__device__ __forceinline__ unsigned ld32(const __half* p) { return *reinterpret_cast<const unsigned*>(p); }

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}

__device__ __forceinline__ void mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two 8x8 b16 matrices transposed: rows at `row_ptr` (lanes 0-7: matrix 0, lanes 8-15: matrix 1).
__device__ __forceinline__ void ldmatrix_x2_trans(unsigned& b0, unsigned& b1, const __half* row_ptr) {
    unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row_ptr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(b0), "=r"(b1) : "r"(addr));
}

// Copy a rows x cols tile of a row-major [*, ld] matrix into shared memory (row stride sld),
// zero-filling rows >= row_limit and cols >= col_limit; 16-byte vectors when aligned.
template <int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_tile(__half* dst, int sld, const __half* src, long long ld, int row0, int col0,
                                          int row_limit, int col_limit) {
    const bool vec = (ld & 7) == 0 && (reinterpret_cast<unsigned long long>(src) & 15) == 0;
    for (int idx = threadIdx.x; idx < ROWS * COLS / 8; idx += THREADS) {
        const int r = idx / (COLS / 8), c = (idx % (COLS / 8)) * 8;
        const int gr = row0 + r, gc = col0 + c;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (gr < row_limit) {
            const __half* p = src + gr * ld + gc;
            if (vec && gc + 8 <= col_limit) {
                val = *reinterpret_cast<const uint4*>(p);
            } else {
                __half tmp[8];
                for (int e = 0; e < 8; ++e) tmp[e] = gc + e < col_limit ? p[e] : __float2half(0.f);
                val = *reinterpret_cast<uint4*>(tmp);
            }
        }
        *reinterpret_cast<uint4*>(dst + r * sld + c) = val;
    }
}

template <int D, bool K_T, typename TM, int WARPS, int BC>
__global__ void __launch_bounds__(WARPS * 32) flash_attention(
        const __half* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
        __half* __restrict__ o, const TM* __restrict__ mask, long long ms0, long long ms1, long long ms2,
        long long ms3, int b1, int sq, int sk, float scale, long long qs0, long long qs1, long long qsr,
        long long ks0, long long ks1, long long ksr, long long vs0, long long vs1, long long vsr, long long os0,
        long long os1, long long osr) {
    constexpr int BR = 16 * WARPS, PAD = 8, THREADS = 32 * WARPS;
    constexpr int KLD = K_T ? BC + PAD : D + PAD, VLD = D + PAD;
    constexpr float LOG2E = 1.4426950408889634f;     // softmax in base 2: exp2f is one instruction
    __shared__ __align__(16) __half k_tile[K_T ? D * KLD : BC * KLD];
    __shared__ __align__(16) __half v_tile[BC * VLD];
    __shared__ float mask_tile[BC];                   // a row-invariant mask (ms2 == 0), times log2(e)
    const float scale2 = scale * LOG2E;
    const bool shared_mask = mask != nullptr && ms2 == 0;

    const int i0 = blockIdx.y / b1, i1 = blockIdx.y % b1;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const __half* qb = q + i0 * qs0 + i1 * qs1;
    const __half* kb = k + i0 * ks0 + i1 * ks1;
    const __half* vb = v + i0 * vs0 + i1 * vs1;
    __half* ob = o + i0 * os0 + i1 * os1;
    const int row0 = blockIdx.x * BR + warp * 16 + g, row1 = row0 + 8;
    const int rc0 = min(row0, sq - 1), rc1 = min(row1, sq - 1);

    unsigned qf[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        qf[kk][0] = ld32(qb + rc0 * qsr + kk * 16 + 2 * t);
        qf[kk][1] = ld32(qb + rc1 * qsr + kk * 16 + 2 * t);
        qf[kk][2] = ld32(qb + rc0 * qsr + kk * 16 + 8 + 2 * t);
        qf[kk][3] = ld32(qb + rc1 * qsr + kk * 16 + 8 + 2 * t);
    }
    const TM* mrow0 = nullptr;
    const TM* mrow1 = nullptr;
    if (mask) {
        const long long base = i0 * ms0 + i1 * ms1;
        mrow0 = mask + base + (long long)rc0 * ms2;
        mrow1 = mask + base + (long long)rc1 * ms2;
    }
    float acc[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    float m0 = WB_NEG_INF, m1 = WB_NEG_INF, l0 = 0.f, l1 = 0.f;

    for (int key0 = 0; key0 < sk; key0 += BC) {
        __syncthreads();                                     // the previous tiles are consumed
        if (K_T) load_tile<D, BC, THREADS>(k_tile, KLD, kb, ksr, 0, key0, D, sk);
        else load_tile<BC, D, THREADS>(k_tile, KLD, kb, ksr, key0, 0, sk, D);
        load_tile<BC, D, THREADS>(v_tile, VLD, vb, vsr, key0, 0, sk, D);
        for (int c = threadIdx.x; shared_mask && c < BC; c += THREADS) {
            const int key = key0 + c;
            mask_tile[c] = key < sk ? wb_mask(mrow0 + key * ms3) * LOG2E : WB_NEG_INF;
        }
        __syncthreads();

        float s[BC / 8][4];
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                unsigned b0, b1;
                if (K_T) {
                    ldmatrix_x2_trans(b0, b1, k_tile + (kk * 16 + (lane & 15)) * KLD + j * 8);
                } else {
                    b0 = ld32(k_tile + (j * 8 + g) * KLD + kk * 16 + 2 * t);
                    b1 = ld32(k_tile + (j * 8 + g) * KLD + kk * 16 + 8 + 2 * t);
                }
                mma16816(s[j], qf[kk], b0, b1);
            }
        }
        float mx0 = WB_NEG_INF, mx1 = WB_NEG_INF;
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = j * 8 + 2 * t + (e & 1), key = key0 + col;
                float x = s[j][e] * scale2;
                if (shared_mask) x += mask_tile[col];
                else if (key >= sk) x = WB_NEG_INF;
                else if (mask) x += wb_mask(e < 2 ? mrow0 + key * ms3 : mrow1 + key * ms3) * LOG2E;
                s[j][e] = x;
            }
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
        const float alpha0 = exp2f(m0 - new0), alpha1 = exp2f(m1 - new1);
        m0 = new0;
        m1 = new1;
        float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) {
            s[j][0] = exp2f(s[j][0] - m0); s[j][1] = exp2f(s[j][1] - m0);
            s[j][2] = exp2f(s[j][2] - m1); s[j][3] = exp2f(s[j][3] - m1);
            sum0 += s[j][0] + s[j][1];
            sum1 += s[j][2] + s[j][3];
        }
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            sum0 += __shfl_xor_sync(0xffffffffu, sum0, off);
            sum1 += __shfl_xor_sync(0xffffffffu, sum1, off);
        }
        l0 = l0 * alpha0 + sum0;
        l1 = l1 * alpha1 + sum1;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            acc[n][0] *= alpha0; acc[n][1] *= alpha0;
            acc[n][2] *= alpha1; acc[n][3] *= alpha1;
        }
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            unsigned a[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                             pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                unsigned b0, b1;
                ldmatrix_x2_trans(b0, b1, v_tile + (kk * 16 + (lane & 15)) * VLD + n * 8);
                mma16816(acc[n], a, b0, b1);
            }
        }
    }
    const float inv0 = 1.f / l0, inv1 = 1.f / l1;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        const int col = n * 8 + 2 * t;
        if (row0 < sq)
            *reinterpret_cast<__half2*>(ob + row0 * osr + col) =
                __floats2half2_rn(acc[n][0] * inv0, acc[n][1] * inv0);
        if (row1 < sq)
            *reinterpret_cast<__half2*>(ob + row1 * osr + col) =
                __floats2half2_rn(acc[n][2] * inv1, acc[n][3] * inv1);
    }
}
