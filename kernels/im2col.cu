// im2col for NHWC images: the column matrix col[m][kk] of a convolution, m = (n, p, q) an output
// pixel and kk = (r * S + s) * C + c a tap and channel, so that  Y[M, K] = col[M, Kcol] x Wt[Kcol, K]
// is the convolution (group 1). Rows are padded with zeros from Kcol to Kpad (a multiple of 8), so
// the GEMM that follows gets aligned rows (cuBLAS tensor-core paths want 16-byte leading dims).
// One launch fills `rows` rows starting at output pixel m0, so a bounded workspace serves any batch
// (the GEMM then runs chunk by chunk). T is the storage type (float, or unsigned short holding fp16
// bits): values are copied, not converted.
template <typename T>
__global__ void im2col_nhwc(const T* __restrict__ x, T* __restrict__ col, long long m0, int rows,
                            int H, int W, int C, int P, int Q, int R, int S,
                            int sh, int sw, int ph, int pw, int dh, int dw, int Kcol, int Kpad) {
    const long long total = (long long)rows * Kpad;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int kk = (int)(idx % Kpad);
        const long long m = m0 + idx / Kpad;
        T v = T(0);
        if (kk < Kcol) {
            const int c = kk % C;
            const int rs = kk / C;
            const int r = rs / S, s = rs - (rs / S) * S;
            const int q = (int)(m % Q);
            const long long t = m / Q;
            const int p = (int)(t % P);
            const int n = (int)(t / P);
            const int ih = p * sh - ph + r * dh;
            const int iw = q * sw - pw + s * dw;
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = x[(((long long)n * H + ih) * W + iw) * C + c];
        }
        col[idx] = v;
    }
}
