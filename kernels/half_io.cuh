// Loads and stores of fp32 or fp16 (cuda_fp16.h's __half) storage with fp32 math, for the kernels
// that template on the storage type (norm.cu, pool.cu, attention.cu's mask).
#pragma once
#include <cuda_fp16.h>

#define WB_NEG_INF __int_as_float(0xff800000)

template <typename T> __device__ __forceinline__ float wb_load(const T* p) { return static_cast<float>(*p); }
template <> __device__ __forceinline__ float wb_load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ T wb_store(float v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half wb_store<__half>(float v) { return __float2half_rn(v); }
