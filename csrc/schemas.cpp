// The native implementation's launchers, one TORCH_LIBRARY (torch.ops.mpdit_native.*); kernels
// register per device in their own files (adaln.cpp, upsample.cpp, *_cuda.cu). These are
// kernels, not autograd ops: the ops themselves (schema, fake, autograd) are defined once in
// mpdit_kernels/ops/ and call these through mpdit_kernels/native.py.
#include <torch/library.h>

TORCH_LIBRARY(mpdit_native, m) {
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
