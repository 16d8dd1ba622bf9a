// The integer tensor-core MMA and the exact int8 epilogue arithmetic of the int8 kernels (qconv1x1,
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

// Epilogues of memory-bound int8 layers are instruction bound (~10 float ops an output), and
// int<->float conversions issue at a quarter of the float rate, so they go through the 1.5 * 2^23
// trick, exact within its range and at the float rate:
//   int -> float: bits(MAGIC) + v is the float MAGIC + v (|v| <= 2^22), minus MAGIC is exactly v
//   float -> int8: MAGIC + v rounds v to an integer, half to even as rintf (|v| <= 2^22); the low
//   byte of its bits is that integer in two's complement
constexpr float MAGIC = 12582912.f;
constexpr int MAGIC_BITS = 0x4B400000;

__device__ __forceinline__ float int_to_float(int v) { return __fsub_rn(__int_as_float(v + MAGIC_BITS), MAGIC); }

// rint(clamp(v, lo, hi)) as an int8 byte; lo <= hi within [-128, 127] (NaN cannot reach here: the
// tactics refuse non-finite multipliers, biases and residual scales). The host folds Relu/Clip
// bounds into [lo, hi] (workbench.backends.cuda.epilogue.int8_clamp), so the activation and the
// int8 saturation are this one clamp; LeakyRelu is applied before it.
__device__ __forceinline__ unsigned int8_byte(float v, float lo, float hi) {
    return __float_as_uint(__fadd_rn(fminf(fmaxf(v, lo), hi), MAGIC)) & 0xffu;
}

}  // namespace wb_int8
