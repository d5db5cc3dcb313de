// CUDA kernels for the stage transition (see upsample.cpp for the ops): one warp per output row.
#include "cuda_rows.cuh"
#include "ops.h"

namespace mpdit {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;

// Fine row f = (i * R + a) * (w * R) + j * R + c reads wide row i * w + j, channel
// d * R * R + a * R + c (F.pixel_shuffle's order). Offset of channel 0 for sample b.
__device__ __forceinline__ int64_t wide_offset(int64_t b, int64_t f, int64_t coarse_rows, int ratio, int64_t grid_w,
                                               int D) {
  const int64_t fine_w = grid_w * ratio, fr = f / fine_w, fc = f % fine_w;
  const int64_t src_row = (fr / ratio) * grid_w + fc / ratio;
  return (b * coarse_rows + src_row) * D * ratio * ratio + (fr % ratio) * ratio + fc % ratio;
}

// tanh(z) = 2 sigmoid(2z) - 1, so 0.5 (1 + tanh z) = sigmoid(2z); returns that sigmoid.
__device__ __forceinline__ float gelu_gate(float u) {
  return 1.f / (1.f + __expf(-2.f * kSqrt2OverPi * (u + 0.044715f * u * u * u)));
}

// Row `row` (of B * L) before the norm into the warp's cache; returns the row's sum.
template <typename scalar_t>
__device__ float gather_row(const scalar_t* __restrict__ wide, const scalar_t* __restrict__ cls, int64_t row,
                            int64_t L, int64_t M, int D, int64_t coarse_rows, int ratio, int64_t grid_w, int lane,
                            float* v) {
  const int64_t b = row / L, l = row % L;
  float sum = 0.f;
  if (l < M) {
    for (int d = lane; d < D; d += kWarp) sum += (v[d] = static_cast<float>(cls[(b * M + l) * D + d]));
  } else {
    const scalar_t* src = wide + wide_offset(b, l - M, coarse_rows, ratio, grid_w, D);
    for (int d = lane; d < D; d += kWarp) {
      const float u = static_cast<float>(src[d * ratio * ratio]);
      sum += (v[d] = u * gelu_gate(u));
    }
  }
  return warp_sum(sum);
}

template <typename scalar_t>
__global__ void upsample_forward_kernel(
    const scalar_t* __restrict__ wide,  // (B, h*w, R*R*D) contiguous
    const scalar_t* __restrict__ cls,   // (B, M, D) contiguous
    scalar_t* __restrict__ out,         // (B, L, D) contiguous, L = M + R*R*h*w
    float* __restrict__ mean, float* __restrict__ rstd,  // (B, L)
    int64_t rows, int64_t L, int64_t M, int D, int64_t coarse_rows, int ratio, int64_t grid_w, float eps) {
  extern __shared__ float cache[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= rows) return;
  float* v = cache + static_cast<int64_t>(warp) * D;
  const float mu = gather_row(wide, cls, row, L, M, D, coarse_rows, ratio, grid_w, lane, v) / D;
  float squares = 0.f;
  for (int d = lane; d < D; d += kWarp) squares += (v[d] - mu) * (v[d] - mu);
  const float inv = rsqrtf(warp_sum(squares) / D + eps);
  for (int d = lane; d < D; d += kWarp) out[row * D + d] = static_cast<scalar_t>((v[d] - mu) * inv);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = inv;
  }
}

// Backward: the derivation above _upsample_bwd_kernel in mpdit_kernels/triton/upsample.py.
// Every element of wide feeds exactly one output element: the scatter needs no atomics.
template <typename scalar_t>
__global__ void upsample_backward_kernel(
    const scalar_t* __restrict__ wide, const scalar_t* __restrict__ cls,  // as in the forward
    const float* __restrict__ mean, const float* __restrict__ rstd,      // (B, L)
    const scalar_t* __restrict__ dout,  // (B, L, D) contiguous
    scalar_t* __restrict__ dwide,       // (B, h*w, R*R*D) contiguous
    scalar_t* __restrict__ dcls,        // (B, M, D) contiguous
    int64_t rows, int64_t L, int64_t M, int D, int64_t coarse_rows, int ratio, int64_t grid_w) {
  extern __shared__ float cache[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= rows) return;
  float* n = cache + static_cast<int64_t>(warp) * D;
  gather_row(wide, cls, row, L, M, D, coarse_rows, ratio, grid_w, lane, n);
  const float mu = mean[row], inv = rstd[row];
  float sum = 0.f, sum_n = 0.f;
  for (int d = lane; d < D; d += kWarp) {
    n[d] = (n[d] - mu) * inv;
    const float g = static_cast<float>(dout[row * D + d]);
    sum += g;
    sum_n += g * n[d];
  }
  const float mean_g = warp_sum(sum) / D, mean_g_n = warp_sum(sum_n) / D;
  const int64_t b = row / L, l = row % L;
  if (l < M) {
    for (int d = lane; d < D; d += kWarp) {
      const float dv = inv * (static_cast<float>(dout[row * D + d]) - mean_g - n[d] * mean_g_n);
      dcls[(b * M + l) * D + d] = static_cast<scalar_t>(dv);
    }
    return;
  }
  const int64_t offset = wide_offset(b, l - M, coarse_rows, ratio, grid_w, D);
  for (int d = lane; d < D; d += kWarp) {
    const float dv = inv * (static_cast<float>(dout[row * D + d]) - mean_g - n[d] * mean_g_n);
    const int64_t k = offset + static_cast<int64_t>(d) * ratio * ratio;
    const float u = static_cast<float>(wide[k]), s = gelu_gate(u);
    const float dgelu = s + u * s * (1.f - s) * 2.f * kSqrt2OverPi * (1.f + 3.f * 0.044715f * u * u);
    dwide[k] = static_cast<scalar_t>(dv * dgelu);
  }
}

template <typename scalar_t>
__global__ void fine_entry_kernel(
    const scalar_t* __restrict__ refined,  // (B, L, D) contiguous, L = M + N
    const scalar_t* __restrict__ skip,     // (B, N, D) contiguous, or null
    const scalar_t* __restrict__ pos,      // (N, D) contiguous
    scalar_t* __restrict__ out,            // (B, L, D) contiguous
    int64_t total, int64_t L, int64_t M, int64_t D) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, l = (i / D) % L, b = i / (D * L);
    float v = static_cast<float>(refined[i]);
    if (l >= M) {
      const int64_t image_row = l - M;
      if (skip != nullptr) v += static_cast<float>(skip[(b * (L - M) + image_row) * D + d]);
      v += static_cast<float>(pos[image_row * D + d]);
    }
    out[i] = static_cast<scalar_t>(v);
  }
}

}  // namespace

void upsample_forward_cuda(const at::Tensor& wide, const at::Tensor& cls, int64_t ratio, int64_t grid_w, double eps,
                           at::Tensor& out, at::Tensor& mean, at::Tensor& rstd) {
  const c10::cuda::OptionalCUDAGuard guard(wide.device());
  const int64_t rows = out.size(0) * out.size(1);
  const int D = static_cast<int>(out.size(2));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, wide.scalar_type(), "upsample_forward_cuda", [&] {
    allow_shared_memory(upsample_forward_kernel<scalar_t>, row_cache_bytes(D));
    upsample_forward_kernel<scalar_t><<<blocks_for_rows(rows), kThreads, row_cache_bytes(D), stream>>>(
        wide.const_data_ptr<scalar_t>(), cls.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        mean.mutable_data_ptr<float>(), rstd.mutable_data_ptr<float>(), rows, out.size(1), cls.size(1), D,
        wide.size(1), static_cast<int>(ratio), grid_w, static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void upsample_backward_cuda(const at::Tensor& wide, const at::Tensor& cls, const at::Tensor& mean,
                            const at::Tensor& rstd, const at::Tensor& dout, int64_t ratio, int64_t grid_w,
                            at::Tensor& dwide, at::Tensor& dcls) {
  const c10::cuda::OptionalCUDAGuard guard(wide.device());
  const int64_t rows = dout.size(0) * dout.size(1);
  const int D = static_cast<int>(dout.size(2));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, wide.scalar_type(), "upsample_backward_cuda", [&] {
    allow_shared_memory(upsample_backward_kernel<scalar_t>, row_cache_bytes(D));
    upsample_backward_kernel<scalar_t><<<blocks_for_rows(rows), kThreads, row_cache_bytes(D), stream>>>(
        wide.const_data_ptr<scalar_t>(), cls.const_data_ptr<scalar_t>(), mean.const_data_ptr<float>(),
        rstd.const_data_ptr<float>(), dout.const_data_ptr<scalar_t>(), dwide.mutable_data_ptr<scalar_t>(),
        dcls.mutable_data_ptr<scalar_t>(), rows, dout.size(1), cls.size(1), D, wide.size(1),
        static_cast<int>(ratio), grid_w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void fine_entry_cuda(const at::Tensor& refined, const at::Tensor& skip, const at::Tensor& pos, at::Tensor& out) {
  const c10::cuda::OptionalCUDAGuard guard(refined.device());
  const int64_t total = refined.numel();
  const int threads = 256;
  const unsigned int blocks = static_cast<unsigned int>(std::min<int64_t>((total + threads - 1) / threads, 65535));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, refined.scalar_type(), "fine_entry_cuda", [&] {
    fine_entry_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        refined.const_data_ptr<scalar_t>(), skip.defined() ? skip.const_data_ptr<scalar_t>() : nullptr,
        pos.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), total, refined.size(1),
        refined.size(1) - pos.size(0), refined.size(2));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace mpdit
