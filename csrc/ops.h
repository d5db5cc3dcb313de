// Device launchers behind the ops registered in module.cpp. The op front ends (adaln.cpp,
// upsample.cpp) check arguments and allocate outputs once for both devices, then call the
// CPU loops (same files) or the CUDA kernels (*_cuda.cu). Undefined tensors mean "absent"
// (the plain AdaLN variant has no y / gate / x_out; fine_entry may have no skip).
#pragma once

#include <ATen/ATen.h>

namespace mpdit {

// Rows handled by one CPU task / one CUDA block in the backward's per-sample reductions.
constexpr int64_t kRowsPerChunk = 16;

// x, y: (B, L, D), unit channel stride, any batch/token stride. gate/shift/scale: (B, D)
// contiguous. Outputs contiguous: x_out, h (B, L, D); mean, rstd (B, L) float32.
void adaln_forward_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& shift,
                       const at::Tensor& scale, double eps, at::Tensor& x_out, at::Tensor& h, at::Tensor& mean,
                       at::Tensor& rstd);
// dx_out, dh contiguous (B, L, D). dgate/dshift/dscale: the per-sample sums, (B, D).
void adaln_backward_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
                        const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& dx_out,
                        const at::Tensor& dh, at::Tensor& dx, at::Tensor& dy, at::Tensor& dgate, at::Tensor& dshift,
                        at::Tensor& dscale);

// wide (B, h*w, r*r*D), cls (B, m, D), contiguous; out (B, m + r*r*h*w, D); mean, rstd (B, L).
void upsample_forward_cpu(const at::Tensor& wide, const at::Tensor& cls, int64_t ratio, int64_t grid_w, double eps,
                          at::Tensor& out, at::Tensor& mean, at::Tensor& rstd);
void upsample_backward_cpu(const at::Tensor& wide, const at::Tensor& cls, const at::Tensor& mean,
                           const at::Tensor& rstd, const at::Tensor& dout, int64_t ratio, int64_t grid_w,
                           at::Tensor& dwide, at::Tensor& dcls);
// refined (B, m + N, D), skip (B, N, D) or undefined, pos (N, D), all contiguous; out like refined.
void fine_entry_cpu(const at::Tensor& refined, const at::Tensor& skip, const at::Tensor& pos, at::Tensor& out);

#ifdef MPDIT_WITH_CUDA
void adaln_forward_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& shift,
                        const at::Tensor& scale, double eps, at::Tensor& x_out, at::Tensor& h, at::Tensor& mean,
                        at::Tensor& rstd);
void adaln_backward_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
                         const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& dx_out,
                         const at::Tensor& dh, at::Tensor& dx, at::Tensor& dy, at::Tensor& dgate,
                         at::Tensor& dshift, at::Tensor& dscale);
void upsample_forward_cuda(const at::Tensor& wide, const at::Tensor& cls, int64_t ratio, int64_t grid_w, double eps,
                           at::Tensor& out, at::Tensor& mean, at::Tensor& rstd);
void upsample_backward_cuda(const at::Tensor& wide, const at::Tensor& cls, const at::Tensor& mean,
                            const at::Tensor& rstd, const at::Tensor& dout, int64_t ratio, int64_t grid_w,
                            at::Tensor& dwide, at::Tensor& dcls);
void fine_entry_cuda(const at::Tensor& refined, const at::Tensor& skip, const at::Tensor& pos, at::Tensor& out);
#endif

}  // namespace mpdit
