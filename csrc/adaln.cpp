// Fused residual + shared-AdaLN modulation: op front ends and CPU loops of the native
// implementation. The op's contract is mpdit_kernels/ops/adaln.py; the CUDA kernels are in
// adaln_cuda.cu.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "checks.h"
#include "ops.h"

namespace mpdit {
namespace {

// ----------------------------------------------------------------------------- CPU loops
// One row at a time in fp32, each loop a single `omp simd` pass so that GCC vectorises it
// (float sums are not reassociated without it); rows are split over threads by
// at::parallel_for (OpenMP inside torch). kResidual picks the variant at compile time.
template <typename scalar_t, bool kResidual>
void forward_rows(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& shift,
                  const at::Tensor& scale, float eps, at::Tensor& x_out, at::Tensor& h, at::Tensor& mean,
                  at::Tensor& rstd) {
  const int64_t L = x.size(1), D = x.size(2);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* y_data = kResidual ? y.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* gate_data = kResidual ? gate.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* shift_data = shift.const_data_ptr<scalar_t>();
  const scalar_t* scale_data = scale.const_data_ptr<scalar_t>();
  scalar_t* x_out_data = kResidual ? x_out.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* h_data = h.mutable_data_ptr<scalar_t>();
  float* mean_data = mean.mutable_data_ptr<float>();
  float* rstd_data = rstd.mutable_data_ptr<float>();
  at::parallel_for(0, x.size(0) * L, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    std::vector<float> row(D);  // the row in fp32, read once from memory
    float* r = row.data();
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / L, l = i % L;
      const scalar_t* x_row = x_data + b * x.stride(0) + l * x.stride(1);
      const scalar_t *shift_b = shift_data + b * D, *scale_b = scale_data + b * D;
      float sum = 0.f;
      if constexpr (kResidual) {
        const scalar_t* y_row = y_data + b * y.stride(0) + l * y.stride(1);
        const scalar_t* gate_b = gate_data + b * D;
        scalar_t* out_row = x_out_data + i * D;
#pragma omp simd reduction(+ : sum)
        for (int64_t d = 0; d < D; ++d) {
          r[d] = static_cast<float>(x_row[d]) + static_cast<float>(gate_b[d]) * static_cast<float>(y_row[d]);
          out_row[d] = static_cast<scalar_t>(r[d]);
          sum += r[d];
        }
      } else {
#pragma omp simd reduction(+ : sum)
        for (int64_t d = 0; d < D; ++d) {
          r[d] = static_cast<float>(x_row[d]);
          sum += r[d];
        }
      }
      const float mu = sum / D;
      float squares = 0.f;
#pragma omp simd reduction(+ : squares)
      for (int64_t d = 0; d < D; ++d) squares += (r[d] - mu) * (r[d] - mu);
      const float inv = 1.f / std::sqrt(squares / D + eps);
      scalar_t* h_row = h_data + i * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) {
        h_row[d] = static_cast<scalar_t>((r[d] - mu) * inv * (1.f + static_cast<float>(scale_b[d])) +
                                         static_cast<float>(shift_b[d]));
      }
      mean_data[i] = mu;
      rstd_data[i] = inv;
    }
  });
}

// Backward: the derivation above _adaln_bwd_kernel in mpdit_kernels/triton/adaln.py. Each task sums its chunk of rows into fp32 partials (B, P, D); they are added at the end,
// so the result does not depend on the thread count.
template <typename scalar_t, bool kResidual>
void backward_rows(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
                   const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& dx_out, const at::Tensor& dh,
                   at::Tensor& dx, at::Tensor& dy, at::Tensor& parts) {
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2), P = parts.size(2);
  const scalar_t* x_data = x.const_data_ptr<scalar_t>();
  const scalar_t* y_data = kResidual ? y.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* gate_data = kResidual ? gate.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* scale_data = scale.const_data_ptr<scalar_t>();
  const float* mean_data = mean.const_data_ptr<float>();
  const float* rstd_data = rstd.const_data_ptr<float>();
  const scalar_t* dx_out_data = kResidual ? dx_out.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* dh_data = dh.const_data_ptr<scalar_t>();
  scalar_t* dx_data = dx.mutable_data_ptr<scalar_t>();
  scalar_t* dy_data = kResidual ? dy.mutable_data_ptr<scalar_t>() : nullptr;
  float* parts_data = parts.mutable_data_ptr<float>();  // (3, B, P, D): dgate, dshift, dscale
  at::parallel_for(0, B * P, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffers(2 * D);
    float *n = buffers.data(), *dn = buffers.data() + D;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / P, p = task % P;
      float* dgate_part = parts_data + task * D;
      float* dshift_part = parts_data + (B * P + task) * D;
      float* dscale_part = parts_data + (2 * B * P + task) * D;
      std::fill(dgate_part, dgate_part + D, 0.f);
      std::fill(dshift_part, dshift_part + D, 0.f);
      std::fill(dscale_part, dscale_part + D, 0.f);
      const scalar_t* scale_b = scale_data + b * D;
      const scalar_t* gate_b = kResidual ? gate_data + b * D : nullptr;
      for (int64_t l = p * kRowsPerChunk; l < std::min(L, (p + 1) * kRowsPerChunk); ++l) {
        const int64_t i = b * L + l;
        const scalar_t* x_row = x_data + b * x.stride(0) + l * x.stride(1);
        const scalar_t* y_row = kResidual ? y_data + b * y.stride(0) + l * y.stride(1) : nullptr;
        const scalar_t* dh_row = dh_data + i * D;
        const float mu = mean_data[i], inv = rstd_data[i];
        float sum_dn = 0.f, sum_dn_n = 0.f;
#pragma omp simd reduction(+ : sum_dn, sum_dn_n)
        for (int64_t d = 0; d < D; ++d) {
          float r = static_cast<float>(x_row[d]);
          if constexpr (kResidual) r += static_cast<float>(gate_b[d]) * static_cast<float>(y_row[d]);
          const float grad = static_cast<float>(dh_row[d]);
          n[d] = (r - mu) * inv;
          dn[d] = grad * (1.f + static_cast<float>(scale_b[d]));
          dshift_part[d] += grad;
          dscale_part[d] += grad * n[d];
          sum_dn += dn[d];
          sum_dn_n += dn[d] * n[d];
        }
        const float mean_dn = sum_dn / D, mean_dn_n = sum_dn_n / D;
        scalar_t* dx_row = dx_data + i * D;
        if constexpr (kResidual) {
          const scalar_t* dx_out_row = dx_out_data + i * D;
          scalar_t* dy_row = dy_data + i * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            const float dr = inv * (dn[d] - mean_dn - n[d] * mean_dn_n) + static_cast<float>(dx_out_row[d]);
            dgate_part[d] += dr * static_cast<float>(y_row[d]);
            dy_row[d] = static_cast<scalar_t>(dr * static_cast<float>(gate_b[d]));
            dx_row[d] = static_cast<scalar_t>(dr);
          }
        } else {
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) dx_row[d] = static_cast<scalar_t>(inv * (dn[d] - mean_dn - n[d] * mean_dn_n));
        }
      }
    }
  });
}

// ----------------------------------------------------------------------------- op front ends
struct Inputs {
  at::Tensor x, y, gate, shift, scale;
};

Inputs check_inputs(const char* op, const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate,
                    const at::Tensor& shift, const at::Tensor& scale) {
  check_dim(op, "x", x, 3, "(B, L, D)");
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
  check_width(op, D);
  if (y.defined()) {
    check_like(op, "y", y, x, {B, L, D});
    check_like(op, "gate", gate, x, {B, D});
  }
  check_like(op, "shift", shift, x, {B, D});
  check_like(op, "scale", scale, x, {B, D});
  return {row_contiguous(x), row_contiguous(y), gate.defined() ? gate.contiguous() : gate, shift.contiguous(),
          scale.contiguous()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(const Inputs& in, double eps) {
  const int64_t B = in.x.size(0), L = in.x.size(1), D = in.x.size(2);
  at::Tensor h = at::empty({B, L, D}, in.x.options());
  at::Tensor x_out = in.y.defined() ? at::empty({B, L, D}, in.x.options()) : at::Tensor();
  at::Tensor mean = at::empty({B, L}, in.x.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty({B, L}, in.x.options().dtype(at::kFloat));
  if (B * L > 0) {
#ifdef MPDIT_WITH_CUDA
    if (in.x.is_cuda()) {
      adaln_forward_cuda(in.x, in.y, in.gate, in.shift, in.scale, eps, x_out, h, mean, rstd);
      return {x_out, h, mean, rstd};
    }
#endif
    adaln_forward_cpu(in.x, in.y, in.gate, in.shift, in.scale, eps, x_out, h, mean, rstd);
  }
  return {x_out, h, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> residual_adaln_modulate(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& shift,
    const at::Tensor& scale, double eps) {
  return forward(check_inputs("residual_adaln_modulate", x, y, gate, shift, scale), eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> adaln_modulate(const at::Tensor& x, const at::Tensor& shift,
                                                              const at::Tensor& scale, double eps) {
  auto [x_out, h, mean, rstd] = forward(check_inputs("adaln_modulate", x, {}, {}, shift, scale), eps);
  return {h, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const char* op, const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
    const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& dx_out, const at::Tensor& dh) {
  Inputs in = check_inputs(op, x, y, gate, scale, scale);  // the backward has no shift: scale stands in
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
  check_stats(op, mean, x, {B, L});
  check_stats(op, rstd, x, {B, L});
  check_like(op, "dh", dh, x, {B, L, D});
  if (y.defined()) check_like(op, "dx_out", dx_out, x, {B, L, D});
  // gradients can arrive as expanded, stride-0 views
  const at::Tensor dh_c = dh.contiguous(), dx_out_c = y.defined() ? dx_out.contiguous() : at::Tensor();
  at::Tensor dx = at::empty({B, L, D}, x.options());
  at::Tensor dy = y.defined() ? at::empty({B, L, D}, x.options()) : at::Tensor();
  at::Tensor dgate = y.defined() ? at::empty({B, D}, x.options()) : at::Tensor();
  at::Tensor dshift = at::empty({B, D}, x.options()), dscale = at::empty({B, D}, x.options());
  if (B * L == 0) {  // no rows: the per-sample sums are empty sums
    for (at::Tensor* t : {&dgate, &dshift, &dscale}) {
      if (t->defined()) t->zero_();
    }
  } else {
#ifdef MPDIT_WITH_CUDA
    if (x.is_cuda()) {
      adaln_backward_cuda(in.x, in.y, in.gate, in.scale, mean, rstd, dx_out_c, dh_c, dx, dy, dgate, dshift, dscale);
      return {dx, dy, dgate, dshift, dscale};
    }
#endif
    adaln_backward_cpu(in.x, in.y, in.gate, in.scale, mean, rstd, dx_out_c, dh_c, dx, dy, dgate, dshift, dscale);
  }
  return {dx, dy, dgate, dshift, dscale};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> residual_adaln_modulate_backward(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale, const at::Tensor& mean,
    const at::Tensor& rstd, const at::Tensor& dx_out, const at::Tensor& dh) {
  return backward("residual_adaln_modulate_backward", x, y, gate, scale, mean, rstd, dx_out, dh);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> adaln_modulate_backward(const at::Tensor& x, const at::Tensor& scale,
                                                                       const at::Tensor& mean, const at::Tensor& rstd,
                                                                       const at::Tensor& dh) {
  auto [dx, dy, dgate, dshift, dscale] = backward("adaln_modulate_backward", x, {}, {}, scale, mean, rstd, {}, dh);
  return {dx, dshift, dscale};
}

}  // namespace

void adaln_forward_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& shift,
                       const at::Tensor& scale, double eps, at::Tensor& x_out, at::Tensor& h, at::Tensor& mean,
                       at::Tensor& rstd) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "adaln_forward_cpu", [&] {
    auto rows = y.defined() ? forward_rows<scalar_t, true> : forward_rows<scalar_t, false>;
    rows(x, y, gate, shift, scale, static_cast<float>(eps), x_out, h, mean, rstd);
  });
}

void adaln_backward_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
                        const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& dx_out,
                        const at::Tensor& dh, at::Tensor& dx, at::Tensor& dy, at::Tensor& dgate, at::Tensor& dshift,
                        at::Tensor& dscale) {
  const int64_t B = x.size(0), P = (x.size(1) + kRowsPerChunk - 1) / kRowsPerChunk;
  at::Tensor parts = at::empty({3, B, P, x.size(2)}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "adaln_backward_cpu", [&] {
    auto rows = y.defined() ? backward_rows<scalar_t, true> : backward_rows<scalar_t, false>;
    rows(x, y, gate, scale, mean, rstd, dx_out, dh, dx, dy, parts);
  });
  at::Tensor sums = parts.sum(2);  // (3, B, D) in fp32, cast once
  if (y.defined()) dgate.copy_(sums[0]);
  dshift.copy_(sums[1]);
  dscale.copy_(sums[2]);
}

TORCH_LIBRARY_IMPL(mpdit_native, CPU, m) {
  m.impl("residual_adaln_modulate", &residual_adaln_modulate);
  m.impl("adaln_modulate", &adaln_modulate);
  m.impl("residual_adaln_modulate_backward", &residual_adaln_modulate_backward);
  m.impl("adaln_modulate_backward", &adaln_modulate_backward);
}

#ifdef MPDIT_WITH_CUDA
TORCH_LIBRARY_IMPL(mpdit_native, CUDA, m) {
  m.impl("residual_adaln_modulate", &residual_adaln_modulate);
  m.impl("adaln_modulate", &adaln_modulate);
  m.impl("residual_adaln_modulate_backward", &residual_adaln_modulate_backward);
  m.impl("adaln_modulate_backward", &adaln_modulate_backward);
}
#endif

}  // namespace mpdit
