// Shared by the CUDA kernels: one warp owns one row of D channels. Lane k handles channels
// k, k + 32, ...: loads are coalesced, and a row cached in shared memory is only read back
// by the lane that wrote it, so no synchronisation is needed around the cache.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "checks.h"

namespace mpdit {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = kWarp * kWarpsPerBlock;

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Dynamic shared memory for a block whose every warp caches one fp32 row of `width`.
inline size_t row_cache_bytes(int64_t width) {
  return static_cast<size_t>(kWarpsPerBlock) * static_cast<size_t>(width) * sizeof(float);
}

// Past the default 48 KiB a kernel must ask for more dynamic shared memory.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

inline unsigned int blocks_for_rows(int64_t rows) {
  return static_cast<unsigned int>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace mpdit
