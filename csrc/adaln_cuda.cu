// CUDA kernels for the fused residual + shared-AdaLN modulation (see adaln.cpp for the op).
#include "cuda_rows.cuh"
#include "ops.h"

namespace mpdit {
namespace {

template <typename scalar_t, bool kResidual>
__global__ void adaln_forward_kernel(
    const scalar_t* __restrict__ x,      // (B, L, D), strides (x_sb, x_sl, 1)
    const scalar_t* __restrict__ y,      // (B, L, D), strides (y_sb, y_sl, 1); unused without residual
    const scalar_t* __restrict__ gate,   // (B, D); unused without residual
    const scalar_t* __restrict__ shift,  // (B, D)
    const scalar_t* __restrict__ scale,  // (B, D)
    scalar_t* __restrict__ x_out,        // (B, L, D) contiguous; unused without residual
    scalar_t* __restrict__ h,            // (B, L, D) contiguous
    float* __restrict__ mean, float* __restrict__ rstd,  // (B, L)
    int64_t rows, int64_t L, int D, int64_t x_sb, int64_t x_sl, int64_t y_sb, int64_t y_sl, float eps) {
  extern __shared__ float cache[];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= rows) return;
  float* r = cache + static_cast<int64_t>(warp) * D;
  const int64_t b = row / L, l = row % L;
  const scalar_t* x_row = x + b * x_sb + l * x_sl;
  float sum = 0.f;
  for (int d = lane; d < D; d += kWarp) {
    float v = static_cast<float>(x_row[d]);
    if (kResidual) {
      v += static_cast<float>(gate[b * D + d]) * static_cast<float>(y[b * y_sb + l * y_sl + d]);
      x_out[row * D + d] = static_cast<scalar_t>(v);
    }
    r[d] = v;
    sum += v;
  }
  const float mu = warp_sum(sum) / D;
  float squares = 0.f;
  for (int d = lane; d < D; d += kWarp) squares += (r[d] - mu) * (r[d] - mu);
  const float inv = rsqrtf(warp_sum(squares) / D + eps);
  for (int d = lane; d < D; d += kWarp) {
    const float modulated = (r[d] - mu) * inv * (1.f + static_cast<float>(scale[b * D + d])) +
                            static_cast<float>(shift[b * D + d]);
    h[row * D + d] = static_cast<scalar_t>(modulated);
  }
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = inv;
  }
}

// Backward: the derivation above _adaln_bwd_kernel in mpdit_kernels/triton/adaln.py.
// Block (b, p) handles rows p * kRowsPerChunk ... of sample b; its warps add their per-sample
// sums into shared memory (fp32 atomics) and the block writes one fp32 partial (3, B, P, D).
// The second pass reloads the row (an L1/L2 hit) instead of caching three rows per warp.
template <typename scalar_t, bool kResidual>
__global__ void adaln_backward_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,  // as in the forward
    const scalar_t* __restrict__ gate, const scalar_t* __restrict__ scale,  // (B, D)
    const float* __restrict__ mean, const float* __restrict__ rstd,  // (B, L)
    const scalar_t* __restrict__ dx_out,  // (B, L, D) contiguous; unused without residual
    const scalar_t* __restrict__ dh,      // (B, L, D) contiguous
    scalar_t* __restrict__ dx, scalar_t* __restrict__ dy,  // (B, L, D) contiguous; dy unused without residual
    float* __restrict__ parts,  // (3, B, P, D): dgate, dshift, dscale partial sums
    int64_t B, int64_t L, int D, int64_t x_sb, int64_t x_sl, int64_t y_sb, int64_t y_sl) {
  extern __shared__ float sums[];  // (3, D)
  const int64_t b = blockIdx.y, p = blockIdx.x, P = gridDim.x;
  for (int d = threadIdx.x; d < 3 * D; d += kThreads) sums[d] = 0.f;
  __syncthreads();
  float *dgate_sum = sums, *dshift_sum = sums + D, *dscale_sum = sums + 2 * D;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t last = min(L, (p + 1) * kRowsPerChunk);
  for (int64_t l = p * kRowsPerChunk + warp; l < last; l += kWarpsPerBlock) {
    const int64_t row = b * L + l;
    const scalar_t* x_row = x + b * x_sb + l * x_sl;
    const scalar_t* y_row = kResidual ? y + b * y_sb + l * y_sl : nullptr;
    const float mu = mean[row], inv = rstd[row];
    float sum_dn = 0.f, sum_dn_n = 0.f;
    for (int d = lane; d < D; d += kWarp) {
      float r = static_cast<float>(x_row[d]);
      if (kResidual) r += static_cast<float>(gate[b * D + d]) * static_cast<float>(y_row[d]);
      const float n = (r - mu) * inv, grad = static_cast<float>(dh[row * D + d]);
      const float dn = grad * (1.f + static_cast<float>(scale[b * D + d]));
      atomicAdd(dshift_sum + d, grad);
      atomicAdd(dscale_sum + d, grad * n);
      sum_dn += dn;
      sum_dn_n += dn * n;
    }
    const float mean_dn = warp_sum(sum_dn) / D, mean_dn_n = warp_sum(sum_dn_n) / D;
    for (int d = lane; d < D; d += kWarp) {
      float r = static_cast<float>(x_row[d]);
      if (kResidual) r += static_cast<float>(gate[b * D + d]) * static_cast<float>(y_row[d]);
      const float n = (r - mu) * inv;
      const float dn = static_cast<float>(dh[row * D + d]) * (1.f + static_cast<float>(scale[b * D + d]));
      float dr = inv * (dn - mean_dn - n * mean_dn_n);
      if (kResidual) {
        dr += static_cast<float>(dx_out[row * D + d]);
        atomicAdd(dgate_sum + d, dr * static_cast<float>(y_row[d]));
        dy[row * D + d] = static_cast<scalar_t>(dr * static_cast<float>(gate[b * D + d]));
      }
      dx[row * D + d] = static_cast<scalar_t>(dr);
    }
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += kThreads) {
    for (int k = 0; k < 3; ++k) parts[((k * B + b) * P + p) * D + d] = sums[k * D + d];
  }
}

}  // namespace

void adaln_forward_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& shift,
                        const at::Tensor& scale, double eps, at::Tensor& x_out, at::Tensor& h, at::Tensor& mean,
                        at::Tensor& rstd) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const int64_t rows = x.size(0) * x.size(1), L = x.size(1);
  const int D = static_cast<int>(x.size(2));
  const bool residual = y.defined();
  const at::Tensor& y_arg = residual ? y : x;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "adaln_forward_cuda", [&] {
    auto kernel = residual ? adaln_forward_kernel<scalar_t, true> : adaln_forward_kernel<scalar_t, false>;
    allow_shared_memory(kernel, row_cache_bytes(D));
    kernel<<<blocks_for_rows(rows), kThreads, row_cache_bytes(D), stream>>>(
        x.const_data_ptr<scalar_t>(), y_arg.const_data_ptr<scalar_t>(),
        residual ? gate.const_data_ptr<scalar_t>() : nullptr, shift.const_data_ptr<scalar_t>(),
        scale.const_data_ptr<scalar_t>(), residual ? x_out.mutable_data_ptr<scalar_t>() : nullptr,
        h.mutable_data_ptr<scalar_t>(), mean.mutable_data_ptr<float>(), rstd.mutable_data_ptr<float>(), rows, L, D,
        x.stride(0), x.stride(1), y_arg.stride(0), y_arg.stride(1), static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void adaln_backward_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
                         const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& dx_out,
                         const at::Tensor& dh, at::Tensor& dx, at::Tensor& dy, at::Tensor& dgate,
                         at::Tensor& dshift, at::Tensor& dscale) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  const int64_t B = x.size(0), L = x.size(1), P = (L + kRowsPerChunk - 1) / kRowsPerChunk;
  const int D = static_cast<int>(x.size(2));
  const bool residual = y.defined();
  const at::Tensor& y_arg = residual ? y : x;
  at::Tensor parts = at::empty({3, B, P, D}, x.options().dtype(at::kFloat));
  auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned int>(P), static_cast<unsigned int>(B));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "adaln_backward_cuda", [&] {
    auto kernel = residual ? adaln_backward_kernel<scalar_t, true> : adaln_backward_kernel<scalar_t, false>;
    kernel<<<grid, kThreads, 3 * D * sizeof(float), stream>>>(
        x.const_data_ptr<scalar_t>(), y_arg.const_data_ptr<scalar_t>(),
        residual ? gate.const_data_ptr<scalar_t>() : nullptr, scale.const_data_ptr<scalar_t>(),
        mean.const_data_ptr<float>(), rstd.const_data_ptr<float>(),
        residual ? dx_out.const_data_ptr<scalar_t>() : nullptr, dh.const_data_ptr<scalar_t>(),
        dx.mutable_data_ptr<scalar_t>(), residual ? dy.mutable_data_ptr<scalar_t>() : nullptr,
        parts.mutable_data_ptr<float>(), B, L, D, x.stride(0), x.stride(1), y_arg.stride(0), y_arg.stride(1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  at::Tensor sums = parts.sum(2);  // (3, B, D) in fp32, cast once
  if (residual) dgate.copy_(sums[0]);
  dshift.copy_(sums[1]);
  dscale.copy_(sums[2]);
}

}  // namespace mpdit
