// The Python module mpdit_kernels._C: importing it loads the ops (torch.ops.mpdit_ext.*),
// which register themselves; the module itself only says what was compiled in.
#include <pybind11/pybind11.h>

PYBIND11_MODULE(_C, module) {
  module.doc() = "MPDiT's fused ops in C++ (CPU) and CUDA, registered as torch.ops.mpdit_ext.*";
#ifdef MPDIT_WITH_CUDA
  module.attr("with_cuda") = true;
#else
  module.attr("with_cuda") = false;
#endif
}
