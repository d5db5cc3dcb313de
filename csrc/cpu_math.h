// Float math for the CPU loops written so that GCC vectorises it (`#pragma omp simd`):
// std::tanh / std::exp are scalar calls that stop the loops from vectorising. The array
// functions at the end (cpu_math.cpp) are also compiled for AVX2 + FMA and picked at run
// time (target_clones), since the package is built for baseline x86-64 (SSE2).
#pragma once

#include <algorithm>
#include <cstdint>

namespace mpdit {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// exp(x) for x in [-87, 87] (clamped outside), within 2 ulp: Cephes' expf, 2^k n by
// range reduction x = k ln2 + r and a degree-6 polynomial for exp(r), |r| <= ln2 / 2.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.f), 87.f);
  const int k = static_cast<int>(x * 1.44269504088896341f + 128.5f) - 128;  // round(x / ln 2), floor of positives
  const float kf = static_cast<float>(k);
  const float r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  union {
    int32_t bits;
    float value;
  } scale = {(k + 127) << 23};  // 2^k (GCC defines type punning through a union)
  return p * scale.value;
}

// GELU (tanh) = u * s with s = 0.5 (1 + tanh z) = sigmoid(2z), z = sqrt(2/pi) (u + 0.044715 u^3).
inline float gelu_gate(float u) {
  return 1.f / (1.f + exp_approx(-2.f * kSqrt2OverPi * (u + kGeluCubic * u * u * u)));
}

// d GELU / du = s + u s (1 - s) 2 sqrt(2/pi) (1 + 3 * 0.044715 u^2), s = gelu_gate(u).
inline float gelu_grad(float u, float s) {
  return s + u * s * (1.f - s) * 2.f * kSqrt2OverPi * (1.f + 3.f * kGeluCubic * u * u);
}

// out[e] = GELU_tanh(u[e]); out may be u. With gate non-null, also gate[e] = s (gelu_gate).
void gelu_forward(const float* u, float* out, float* gate, int64_t n);
// grad[e] *= GELU_tanh'(u[e]), from the gates the forward saved.
void gelu_backward(const float* u, const float* gate, float* grad, int64_t n);

}  // namespace mpdit
