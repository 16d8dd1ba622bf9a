// NCHW -> NHWC for tensors of few channels (an image input: C = 1..4), the Reformat in front of an
// NHWC network. A general strided transpose (cupy.copyto over a transposed view) moves ResNet-50's
// input at ~0.4 TB/s: with C = 3 each thread writes one element and reads across planes. Here a
// thread takes 4 consecutive pixels of one image: one 4-element vector load per channel plane
// (coalesced across the warp), then its 4 * C elements, interleaved, as 32-bit word stores.
// Needs H * W % 4 == 0 and 16-byte aligned buffers (the tactic checks both).

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec { T v[N]; };

template <typename T, int C>
__global__ void nchw_to_nhwc_few(const T* __restrict__ x, T* __restrict__ y, long long hw, long long groups) {
    static_assert((4 * C * sizeof(T)) % 4 == 0, "a thread's output is whole words");
    constexpr int WORDS = C * sizeof(T);            // 4 pixels x C elements x sizeof(T) bytes / 4
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= groups) return;
    const long long per_image = hw / 4, n = i / per_image, g = i - n * per_image;
    Vec<T, 4> in[C];
#pragma unroll
    for (int c = 0; c < C; ++c) in[c] = reinterpret_cast<const Vec<T, 4>*>(x + (n * C + c) * hw)[g];
    union { T v[4 * C]; unsigned w[WORDS]; } out;
#pragma unroll
    for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int c = 0; c < C; ++c) out.v[p * C + c] = in[c].v[p];
    unsigned* dst = reinterpret_cast<unsigned*>(y + (n * hw + 4 * g) * C);
#pragma unroll
    for (int k = 0; k < WORDS; ++k) dst[k] = out.w[k];
}
