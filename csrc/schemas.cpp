// The op schemas: one TORCH_LIBRARY for every op; kernels register per device in their own
// files (adaln.cpp, upsample.cpp, *_cuda.cu). Fake implementations and autograd formulas are
// registered from Python (mpdit_kernels/native.py), so torch.compile traces each op as one node.
#include <torch/library.h>

TORCH_LIBRARY(mpdit_ext, m) {
  m.def("residual_adaln_modulate(Tensor x, Tensor y, Tensor gate, Tensor shift, Tensor scale, float eps)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("adaln_modulate(Tensor x, Tensor shift, Tensor scale, float eps) -> (Tensor, Tensor, Tensor)");
  m.def("residual_adaln_modulate_backward(Tensor x, Tensor y, Tensor gate, Tensor scale, Tensor mean, Tensor rstd,"
        " Tensor dx_out, Tensor dh) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("adaln_modulate_backward(Tensor x, Tensor scale, Tensor mean, Tensor rstd, Tensor dh)"
        " -> (Tensor, Tensor, Tensor)");
  m.def("upsample_shuffle_norm(Tensor wide, Tensor cls, int ratio, int grid_h, int grid_w, float eps)"
        " -> (Tensor, Tensor, Tensor)");
  m.def("upsample_shuffle_norm_backward(Tensor wide, Tensor cls, Tensor mean, Tensor rstd, Tensor dout, int ratio,"
        " int grid_w) -> (Tensor, Tensor)");
  m.def("fine_entry(Tensor refined, Tensor? skip, Tensor pos) -> Tensor");
}
