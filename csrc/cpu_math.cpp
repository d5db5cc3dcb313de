// The GELU array passes of the CPU upsample (see cpu_math.h), cloned for AVX2 + FMA.
#include "cpu_math.h"

namespace mpdit {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MPDIT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MPDIT_CPU_CLONES
#endif

MPDIT_CPU_CLONES void gelu_forward(const float* u, float* out, float* gate, int64_t n) {
  if (gate == nullptr) {
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) out[e] = u[e] * gelu_gate(u[e]);
    return;
  }
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    gate[e] = gelu_gate(u[e]);
    out[e] = u[e] * gate[e];
  }
}

MPDIT_CPU_CLONES void gelu_backward(const float* u, const float* gate, float* grad, int64_t n) {
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) grad[e] *= gelu_grad(u[e], gate[e]);
}

}  // namespace mpdit
