// Argument checks shared by every op. They throw c10::ValueError (Python's ValueError)
// naming the op, the argument, what it got and what was expected.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace mpdit {

// Numbers, shapes, dtypes and devices become text through std::to_string and c10's own
// functions, not iostreams, so the messages stay whole whichever libstdc++ is linked.
inline std::string text(int64_t value) { return std::to_string(value); }
inline std::string text(at::ScalarType type) { return c10::toString(type); }
inline std::string text(const at::Device& device) { return device.str(); }
inline std::string text(at::IntArrayRef shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

inline void check_float(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf,
                    op, ": ", name, " has dtype ", text(t.scalar_type()), ", expected float32, bfloat16 or float16");
}

// Same device and dtype as `like` (the op's first input), and exactly `shape`.
inline void check_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& like,
                       at::IntArrayRef shape) {
  TORCH_CHECK_VALUE(t.defined(), op, ": ", name, " is undefined");
  check_float(op, name, t);
  TORCH_CHECK_VALUE(t.device() == like.device(), op, ": ", name, " is on ", text(t.device()), ", expected ",
                    text(like.device()), " like the other inputs");
  TORCH_CHECK_VALUE(t.scalar_type() == like.scalar_type(), op, ": ", name, " has dtype ", text(t.scalar_type()),
                    ", expected ", text(like.scalar_type()), " like the other inputs (mpdit_kernels/native.py casts)");
  TORCH_CHECK_VALUE(t.sizes() == shape, op, ": ", name, " has shape ", text(t.sizes()), ", expected ", text(shape));
}

inline void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim, const char* layout) {
  TORCH_CHECK_VALUE(t.defined() && t.dim() == dim, op, ": ", name, " must be a ", layout, " tensor, got shape ",
                    text(t.defined() ? t.sizes() : at::IntArrayRef{}));
  check_float(op, name, t);
}

// The kernels index rows with (batch, token) strides: a token slice is read in place, other
// layouts (e.g. a transposed patch embedding) are copied.
inline at::Tensor row_contiguous(const at::Tensor& t) {
  return !t.defined() || t.stride(-1) == 1 ? t : t.contiguous();
}

inline void check_stats(const char* op, const at::Tensor& stat, const at::Tensor& like, at::IntArrayRef shape) {
  TORCH_CHECK_VALUE(stat.scalar_type() == at::kFloat && stat.sizes() == shape && stat.is_contiguous() &&
                    stat.device() == like.device(), op, ": mean/rstd must be contiguous float32 ", text(shape),
                    " on ", text(like.device()), ", got ", text(stat.scalar_type()), " ", text(stat.sizes()));
}

// The CUDA kernels cache one fp32 row per warp in shared memory: 4 warps x 4096 x 4 bytes
// = 64 KiB, within what every GPU since Volta grants a block on request.
constexpr int64_t kMaxWidth = 4096;

inline void check_width(const char* op, int64_t width) {
  TORCH_CHECK_VALUE(width >= 1 && width <= kMaxWidth, op, ": width ", text(width), " is outside the 1..",
                    text(kMaxWidth), " these kernels support");
}

}  // namespace mpdit
