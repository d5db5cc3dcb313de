// The Python module mpdit_kernels._native: importing it loads the ops (torch.ops.mpdit_native.*),
// which register themselves; the module itself only says what was compiled in. Plain
// CPython API, as PyTorch's extension-cpp example does: the ops need no pybind11 bindings.
#include <Python.h>

namespace {

#ifdef MPDIT_WITH_CUDA
constexpr bool kWithCuda = true;
#else
constexpr bool kWithCuda = false;
#endif

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_native",
                          "MPDiT's fused ops in C++ (CPU) and CUDA, registered as torch.ops.mpdit_native.*", -1,
                          nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__native(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr && PyModule_AddObjectRef(module, "with_cuda", kWithCuda ? Py_True : Py_False) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
