// MPDiT's stage transition (upsample_shuffle_norm, fine_entry): op front ends and CPU loops
// of the native implementation. The contracts are mpdit_kernels/ops/upsample.py and
// fine_entry.py; the CUDA kernels are in upsample_cuda.cu.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "checks.h"
#include "cpu_math.h"
#include "ops.h"

namespace mpdit {
namespace {

// One task per coarse row s of sample b: its r*r fine rows read one contiguous row of wide
// (r*r*D values, channel d * r*r + k feeding fine row k), transposed on load into r*r rows
// of D in a task buffer that stays in cache; GELU then runs as one vectorised pass over it.
// Fine row k = a * r + c of coarse row (i, j) is output row m + (i * r + a) * (w * r) + j * r + c
// (F.pixel_shuffle's order). Class-token rows are their own tasks.
inline int64_t fine_row(int64_t coarse, int64_t k, int64_t ratio, int64_t grid_w) {
  const int64_t i = coarse / grid_w, j = coarse % grid_w, a = k / ratio, c = k % ratio;
  return (i * ratio + a) * (grid_w * ratio) + j * ratio + c;
}

// rows[k * D + d] = src[d * groups + k]: one coarse row of wide as its r*r fine rows.
template <typename scalar_t>
void load_transposed(const scalar_t* src, int64_t groups, int64_t D, float* rows) {
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t k = 0; k < groups; ++k) rows[k * D + d] = static_cast<float>(src[d * groups + k]);
  }
}

// LayerNorm (no affine) of the fp32 row v into out; returns (mean, rstd).
template <typename scalar_t>
std::pair<float, float> normalize_row(const float* v, int64_t D, float eps, scalar_t* out) {
  float sum = 0.f, squares = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t d = 0; d < D; ++d) sum += v[d];
  const float mu = sum / D;
#pragma omp simd reduction(+ : squares)
  for (int64_t d = 0; d < D; ++d) squares += (v[d] - mu) * (v[d] - mu);
  const float inv = 1.f / std::sqrt(squares / D + eps);
#pragma omp simd
  for (int64_t d = 0; d < D; ++d) out[d] = static_cast<scalar_t>((v[d] - mu) * inv);
  return {mu, inv};
}

template <typename scalar_t>
void upsample_forward_rows(const at::Tensor& wide, const at::Tensor& cls, int64_t ratio, int64_t grid_w, float eps,
                           at::Tensor& out, at::Tensor& mean, at::Tensor& rstd) {
  const int64_t B = out.size(0), L = out.size(1), D = out.size(2), M = cls.size(1), coarse_rows = wide.size(1);
  const int64_t groups = ratio * ratio, tasks_per_sample = M + coarse_rows;
  const scalar_t* wide_data = wide.const_data_ptr<scalar_t>();
  const scalar_t* cls_data = cls.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  float* mean_data = mean.mutable_data_ptr<float>();
  float* rstd_data = rstd.mutable_data_ptr<float>();
  at::parallel_for(0, B * tasks_per_sample, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(groups * D);  // (r*r, D): the task's rows in fp32
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tasks_per_sample, unit = task % tasks_per_sample;
      if (unit < M) {  // a class token: normalised as it is
        const scalar_t* src = cls_data + (b * M + unit) * D;
        for (int64_t d = 0; d < D; ++d) rows[d] = static_cast<float>(src[d]);
        const int64_t i = b * L + unit;
        std::tie(mean_data[i], rstd_data[i]) = normalize_row(rows.data(), D, eps, out_data + i * D);
        continue;
      }
      const int64_t coarse = unit - M;
      load_transposed(wide_data + (b * coarse_rows + coarse) * groups * D, groups, D, rows.data());
      gelu_forward(rows.data(), rows.data(), nullptr, groups * D);
      for (int64_t k = 0; k < groups; ++k) {
        const int64_t i = b * L + M + fine_row(coarse, k, ratio, grid_w);
        std::tie(mean_data[i], rstd_data[i]) = normalize_row(rows.data() + k * D, D, eps, out_data + i * D);
      }
    }
  });
}

// The LayerNorm backward of one row (derivation: mpdit_kernels/triton/upsample.py), with n
// recomputed from the pre-norm row v and the saved mean / rstd.
template <typename scalar_t>
void normalize_row_backward(const float* v, const scalar_t* dout, float mu, float inv, int64_t D, float* dv) {
  float sum = 0.f, sum_n = 0.f;
#pragma omp simd reduction(+ : sum, sum_n)
  for (int64_t d = 0; d < D; ++d) {
    const float g = static_cast<float>(dout[d]);
    sum += g;
    sum_n += g * (v[d] - mu) * inv;
  }
  const float mean_g = sum / D, mean_g_n = sum_n / D;
#pragma omp simd
  for (int64_t d = 0; d < D; ++d) dv[d] = inv * (static_cast<float>(dout[d]) - mean_g - (v[d] - mu) * inv * mean_g_n);
}

// Backward: class rows get dcls = dv; image rows du = dv * GELU'(u), written back into wide's
// layout. Every element of wide feeds exactly one output element: tasks write disjoint memory.
template <typename scalar_t>
void upsample_backward_rows(const at::Tensor& wide, const at::Tensor& cls, const at::Tensor& mean,
                            const at::Tensor& rstd, const at::Tensor& dout, int64_t ratio, int64_t grid_w,
                            at::Tensor& dwide, at::Tensor& dcls) {
  const int64_t B = dout.size(0), L = dout.size(1), D = dout.size(2), M = cls.size(1), coarse_rows = wide.size(1);
  const int64_t groups = ratio * ratio, tasks_per_sample = M + coarse_rows;
  const scalar_t* wide_data = wide.const_data_ptr<scalar_t>();
  const scalar_t* cls_data = cls.const_data_ptr<scalar_t>();
  const scalar_t* dout_data = dout.const_data_ptr<scalar_t>();
  const float* mean_data = mean.const_data_ptr<float>();
  const float* rstd_data = rstd.const_data_ptr<float>();
  scalar_t* dwide_data = dwide.mutable_data_ptr<scalar_t>();
  scalar_t* dcls_data = dcls.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, B * tasks_per_sample, 1, [&](int64_t begin, int64_t end) {
    // (r*r, D) each: pre-activations, GELU gates, activations, then gradients, in fp32
    std::vector<float> pre_activation(groups * D), gates(groups * D), activated(groups * D), grad(groups * D);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tasks_per_sample, unit = task % tasks_per_sample;
      float *u = pre_activation.data(), *act = activated.data(), *g = grad.data();
      if (unit < M) {
        const int64_t i = b * L + unit;
        const scalar_t* src = cls_data + (b * M + unit) * D;
        for (int64_t d = 0; d < D; ++d) act[d] = static_cast<float>(src[d]);
        normalize_row_backward(act, dout_data + i * D, mean_data[i], rstd_data[i], D, g);
        scalar_t* dst = dcls_data + (b * M + unit) * D;
        for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<scalar_t>(g[d]);
        continue;
      }
      const int64_t coarse = unit - M;
      const int64_t offset = (b * coarse_rows + coarse) * groups * D;
      load_transposed(wide_data + offset, groups, D, u);
      gelu_forward(u, act, gates.data(), groups * D);
      for (int64_t k = 0; k < groups; ++k) {
        const int64_t i = b * L + M + fine_row(coarse, k, ratio, grid_w);
        normalize_row_backward(act + k * D, dout_data + i * D, mean_data[i], rstd_data[i], D, g + k * D);
      }
      gelu_backward(u, gates.data(), g, groups * D);
      scalar_t* dst = dwide_data + offset;  // back to wide's layout: channel d * r*r + k
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t k = 0; k < groups; ++k) dst[d * groups + k] = static_cast<scalar_t>(g[k * D + d]);
      }
    }
  });
}

template <typename scalar_t>
void fine_entry_rows(const at::Tensor& refined, const at::Tensor& skip, const at::Tensor& pos, at::Tensor& out) {
  const int64_t L = refined.size(1), D = refined.size(2), N = pos.size(0), M = L - N;
  const scalar_t* refined_data = refined.const_data_ptr<scalar_t>();
  const scalar_t* skip_data = skip.defined() ? skip.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* pos_data = pos.const_data_ptr<scalar_t>();
  scalar_t* out_data = out.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, refined.size(0) * L, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / L, l = i % L;
      for (int64_t d = 0; d < D; ++d) {
        float v = static_cast<float>(refined_data[i * D + d]);
        if (l >= M) {
          if (skip_data != nullptr) v += static_cast<float>(skip_data[(b * N + l - M) * D + d]);
          v += static_cast<float>(pos_data[(l - M) * D + d]);
        }
        out_data[i * D + d] = static_cast<scalar_t>(v);
      }
    }
  });
}

// ----------------------------------------------------------------------------- op front ends
void check_upsample(const char* op, const at::Tensor& wide, const at::Tensor& cls, int64_t ratio, int64_t grid_h,
                    int64_t grid_w) {
  check_dim(op, "wide", wide, 3, "(B, h*w, r*r*D)");
  check_dim(op, "cls", cls, 3, "(B, m, D)");
  const int64_t B = wide.size(0), channels = wide.size(2);
  TORCH_CHECK_VALUE(grid_h >= 1 && grid_w >= 1 && wide.size(1) == grid_h * grid_w, op, ": wide has ",
                    text(wide.size(1)), " tokens, expected grid_h * grid_w = ", text(grid_h * grid_w));
  TORCH_CHECK_VALUE(ratio >= 2 && channels % (ratio * ratio) == 0, op, ": ratio=", text(ratio),
                    ": expected >= 2 dividing wide's ", text(channels), " channels into ratio^2 groups");
  check_width(op, channels / (ratio * ratio));
  check_like(op, "cls", cls, wide, {B, cls.size(1), channels / (ratio * ratio)});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_shuffle_norm(const at::Tensor& wide, const at::Tensor& cls,
                                                                     int64_t ratio, int64_t grid_h, int64_t grid_w,
                                                                     double eps) {
  check_upsample("upsample_shuffle_norm", wide, cls, ratio, grid_h, grid_w);
  const int64_t B = wide.size(0), M = cls.size(1), D = cls.size(2), L = M + ratio * ratio * grid_h * grid_w;
  const at::Tensor wide_c = wide.contiguous(), cls_c = cls.contiguous();
  at::Tensor out = at::empty({B, L, D}, wide.options());
  at::Tensor mean = at::empty({B, L}, wide.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty({B, L}, wide.options().dtype(at::kFloat));
  if (B * L > 0) {
#ifdef MPDIT_WITH_CUDA
    if (wide.is_cuda()) {
      upsample_forward_cuda(wide_c, cls_c, ratio, grid_w, eps, out, mean, rstd);
      return {out, mean, rstd};
    }
#endif
    upsample_forward_cpu(wide_c, cls_c, ratio, grid_w, eps, out, mean, rstd);
  }
  return {out, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor> upsample_shuffle_norm_backward(const at::Tensor& wide, const at::Tensor& cls,
                                                                  const at::Tensor& mean, const at::Tensor& rstd,
                                                                  const at::Tensor& dout, int64_t ratio,
                                                                  int64_t grid_w) {
  constexpr const char* op = "upsample_shuffle_norm_backward";
  TORCH_CHECK_VALUE(grid_w >= 1 && wide.dim() == 3 && wide.size(1) % grid_w == 0, op, ": grid_w=", text(grid_w),
                    " does not divide wide's ", text(wide.dim() == 3 ? wide.size(1) : -1), " tokens");
  check_upsample(op, wide, cls, ratio, wide.size(1) / grid_w, grid_w);
  const int64_t B = wide.size(0), M = cls.size(1), D = cls.size(2), L = M + ratio * ratio * wide.size(1);
  check_stats(op, mean, wide, {B, L});
  check_stats(op, rstd, wide, {B, L});
  check_like(op, "dout", dout, wide, {B, L, D});
  const at::Tensor wide_c = wide.contiguous(), cls_c = cls.contiguous(), dout_c = dout.contiguous();
  at::Tensor dwide = at::empty(wide.sizes(), wide.options()), dcls = at::empty(cls.sizes(), cls.options());
  if (B * L > 0) {
#ifdef MPDIT_WITH_CUDA
    if (wide.is_cuda()) {
      upsample_backward_cuda(wide_c, cls_c, mean, rstd, dout_c, ratio, grid_w, dwide, dcls);
      return {dwide, dcls};
    }
#endif
    upsample_backward_cpu(wide_c, cls_c, mean, rstd, dout_c, ratio, grid_w, dwide, dcls);
  }
  return {dwide, dcls};
}

at::Tensor fine_entry(const at::Tensor& refined, const std::optional<at::Tensor>& skip, const at::Tensor& pos) {
  constexpr const char* op = "fine_entry";
  check_dim(op, "refined", refined, 3, "(B, m + N, D)");
  check_dim(op, "pos", pos, 2, "(N, D)");
  const int64_t B = refined.size(0), L = refined.size(1), D = refined.size(2), N = pos.size(0);
  check_width(op, D);
  check_like(op, "pos", pos, refined, {N, D});
  TORCH_CHECK_VALUE(N <= L, op, ": pos has ", text(N), " tokens, more than refined's ", text(L));
  const bool has_skip = skip.has_value() && skip->defined();
  if (has_skip) check_like(op, "skip", *skip, refined, {B, N, D});
  const at::Tensor refined_c = refined.contiguous(), pos_c = pos.contiguous();
  const at::Tensor skip_c = has_skip ? skip->contiguous() : at::Tensor();
  at::Tensor out = at::empty({B, L, D}, refined.options());
  if (B * L > 0) {
#ifdef MPDIT_WITH_CUDA
    if (refined.is_cuda()) {
      fine_entry_cuda(refined_c, skip_c, pos_c, out);
      return out;
    }
#endif
    fine_entry_cpu(refined_c, skip_c, pos_c, out);
  }
  return out;
}

}  // namespace

void upsample_forward_cpu(const at::Tensor& wide, const at::Tensor& cls, int64_t ratio, int64_t grid_w, double eps,
                          at::Tensor& out, at::Tensor& mean, at::Tensor& rstd) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, wide.scalar_type(), "upsample_forward_cpu", [&] {
    upsample_forward_rows<scalar_t>(wide, cls, ratio, grid_w, static_cast<float>(eps), out, mean, rstd);
  });
}

void upsample_backward_cpu(const at::Tensor& wide, const at::Tensor& cls, const at::Tensor& mean,
                           const at::Tensor& rstd, const at::Tensor& dout, int64_t ratio, int64_t grid_w,
                           at::Tensor& dwide, at::Tensor& dcls) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, wide.scalar_type(), "upsample_backward_cpu", [&] {
    upsample_backward_rows<scalar_t>(wide, cls, mean, rstd, dout, ratio, grid_w, dwide, dcls);
  });
}

void fine_entry_cpu(const at::Tensor& refined, const at::Tensor& skip, const at::Tensor& pos, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, refined.scalar_type(), "fine_entry_cpu", [&] {
    fine_entry_rows<scalar_t>(refined, skip, pos, out);
  });
}

TORCH_LIBRARY_IMPL(mpdit_native, CPU, m) {
  m.impl("upsample_shuffle_norm", &upsample_shuffle_norm);
  m.impl("upsample_shuffle_norm_backward", &upsample_shuffle_norm_backward);
  m.impl("fine_entry", &fine_entry);
}

#ifdef MPDIT_WITH_CUDA
TORCH_LIBRARY_IMPL(mpdit_native, CUDA, m) {
  m.impl("upsample_shuffle_norm", &upsample_shuffle_norm);
  m.impl("upsample_shuffle_norm_backward", &upsample_shuffle_norm_backward);
  m.impl("fine_entry", &fine_entry);
}
#endif

}  // namespace mpdit
