// The integer tensor-core MMA and the exact int8 epilogue arithmetic of the int8 kernels (qconv_igemm,
// qconv_stem). Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k32"; g = lane / 4, t = lane % 4):
//     A 16x32: a0 row g, k 4t..4t+3 | a1 row g+8 | a2 row g, k 16+4t.. | a3 row g+8, k 16+4t..
//     B 32x8:  b0 col g, k 4t..4t+3 | b1 col g, k 16+4t..      C: c0,c1 row g, cols 2t,2t+1 | c2,c3 row g+8
#pragma once

namespace wb_int8 {

__device__ __forceinline__ void mma_16832(int* c, const unsigned* a, const unsigned* b) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c = a * b: a tile's first k step, no zeroed accumulators to set
__device__ __forceinline__ void mma_16832_first(int* c, const unsigned* a, const unsigned* b) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %10, %10, %10};\n"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0));
}

// Epilogues of memory-bound int8 layers are instruction bound (~10 float ops an output), so every
// op counts. Sums convert with __int2float_rn (one I2FP on sm_90, exact); the rounding to an
// integer uses the 1.5 * 2^23 trick: MAGIC + v rounds v half to even as rintf (|v| <= 2^22), and
// the low byte of its bits is that integer in two's complement.
constexpr float MAGIC = 12582912.f;

// the two int8 values of a 16-bit pair as exact floats: prmt with a selector nibble's msb set
// replicates the byte's sign, so each byte comes out sign-extended (one instruction), then I2FP
__device__ __forceinline__ float2 int8_pair_to_float(unsigned pair) {
    int z0, z1;
    asm("prmt.b32 %0, %1, 0, 0x8880;" : "=r"(z0) : "r"(pair));
    asm("prmt.b32 %0, %1, 0, 0x9991;" : "=r"(z1) : "r"(pair));
    return make_float2(__int2float_rn(z0), __int2float_rn(z1));
}

// rint(clamp(v, lo, hi)) as int8 bytes, two of them packed in 16 bits; lo <= hi within [-128, 127]
// (NaN cannot reach here: the tactics refuse non-finite multipliers, biases and residual scales).
// The host folds Relu/Clip bounds into [lo, hi] (workbench.backends.cuda.epilogue.int8_clamp), so
// the activation and the int8 saturation are this one clamp; LeakyRelu is applied before it.
__device__ __forceinline__ unsigned short int8_pair(float v0, float v1, float lo, float hi) {
    const unsigned b0 = __float_as_uint(__fadd_rn(fminf(fmaxf(v0, lo), hi), MAGIC));
    const unsigned b1 = __float_as_uint(__fadd_rn(fminf(fmaxf(v1, lo), hi), MAGIC));
    return static_cast<unsigned short>(__byte_perm(b0, b1, 0x0040));   // the low byte of each
}

// compile-time flags: each epilogue form is its own code (a per-fragment branch on a runtime flag
// cost as many instructions as the arithmetic)
template <bool B>
struct flag { static constexpr bool value = B; };

// f(flag<residual>, flag<leaky>): the runtime flags, once, as compile-time ones
template <class F>
__device__ __forceinline__ void with_epilogue_flags(bool residual, bool leaky, F&& f) {
    if (residual) leaky ? f(flag<true>{}, flag<true>{}) : f(flag<true>{}, flag<false>{});
    else leaky ? f(flag<false>{}, flag<true>{}) : f(flag<false>{}, flag<false>{});
}

// the requantizing epilogue's constants after the per-channel multiplier and bias
struct Requant {
    float zscale, alpha, lo, hi;
};

// workbench::FusedQConv's epilogue on one accumulator pair (a pixel's two adjacent output channels),
// in the CPU emulation's order, each op rounded to float32 (cpu/ops/fused_conv.py fused_qconv):
//     int8(clamp(leaky(float(a) * m + b (+ float(z) * zscale))))
// `o` is the pair's 16 bits in a shared-memory output tile: with a residual it holds z, which this
// thread alone reads and then overwrites with the result.
template <bool RESIDUAL, bool LEAKY>
__device__ __forceinline__ void requantize_pair(unsigned short* o, const int* a, float2 m, float2 b, const Requant& q) {
    float v0 = __fadd_rn(__fmul_rn(__int2float_rn(a[0]), m.x), b.x);
    float v1 = __fadd_rn(__fmul_rn(__int2float_rn(a[1]), m.y), b.y);
    if (RESIDUAL) {
        const float2 z = int8_pair_to_float(*o);
        v0 = __fadd_rn(v0, __fmul_rn(z.x, q.zscale));
        v1 = __fadd_rn(v1, __fmul_rn(z.y, q.zscale));
    }
    if (LEAKY) {
        v0 = v0 < 0.f ? __fmul_rn(v0, q.alpha) : v0;
        v1 = v1 < 0.f ? __fmul_rn(v1, q.alpha) : v1;
    }
    *o = int8_pair(v0, v1, q.lo, q.hi);
}

// A warp's MI x NI accumulator fragments (m16 x n8 each) through the epilogue into an output tile in
// shared memory, `ld` bytes a row: fragment (mi, ni) lands on rows row0 + 16 mi .. and columns
// col0 + 8 ni .. of the tile, whose column j is channel j of `mult` and `bias` (offset to the tile's
// first channel by the caller). With a residual the tile holds Z's bytes on entry.
template <int MI, int NI>
__device__ __forceinline__ void requantize_fragments(const int (&acc)[MI][NI][4], signed char* tile, int ld, int row0,
                                                     int col0, const float* mult, const float* bias, const Requant& q,
                                                     bool residual, bool leaky, int lane) {
    const int g = lane >> 2, t = lane & 3;
    with_epilogue_flags(residual, leaky, [&](auto z, auto lk) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
            const int col = col0 + ni * 8 + 2 * t;
            const float2 mv = __ldg(reinterpret_cast<const float2*>(mult + col));
            const float2 bv = __ldg(reinterpret_cast<const float2*>(bias + col));
#pragma unroll
            for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                for (int h = 0; h < 2; ++h)
                    requantize_pair<decltype(z)::value, decltype(lk)::value>(
                        reinterpret_cast<unsigned short*>(tile + (row0 + mi * 16 + g + 8 * h) * ld + col),
                        &acc[mi][ni][2 * h], mv, bv, q);
        }
    });
}

}  // namespace wb_int8
