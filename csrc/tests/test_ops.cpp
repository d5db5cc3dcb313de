// C++ unit tests of the registered ops (through the dispatcher, as Python calls them) against
// ATen compositions of the same math, outputs and every gradient, on the CPU and, when the
// library has the CUDA kernels and a GPU is present, on the GPU. Run by ctest.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <string>
#include <tuple>

namespace {

int failures = 0;

void expect_close(const std::string& what, const at::Tensor& got, const at::Tensor& want, double tol = 1e-5) {
  const bool shapes = got.sizes() == want.sizes();
  const double error = shapes ? (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>() : -1;
  const double scale = std::max(want.abs().max().item<double>(), 1.0);
  if (!shapes || !(error <= tol * scale)) {  // NaN fails too
    std::printf("FAIL %s: max error %.3g (shape ok: %d)\n", what.c_str(), error, shapes);
    ++failures;
  } else {
    std::printf("ok   %s: max error %.3g\n", what.c_str(), error);
  }
}

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

std::vector<at::Tensor> grads(const std::vector<at::Tensor>& outputs, const std::vector<at::Tensor>& cotangents,
                              const std::vector<at::Tensor>& inputs) {
  at::Tensor loss = at::zeros({}, outputs[0].options());
  for (size_t i = 0; i < outputs.size(); ++i) loss = loss + (outputs[i] * cotangents[i]).sum();
  for (const auto& t : inputs) t.mutable_grad() = at::Tensor();
  loss.backward();
  std::vector<at::Tensor> result;
  for (const auto& t : inputs) result.push_back(t.grad().clone());
  return result;
}

at::Tensor leaf(at::IntArrayRef shape, const at::TensorOptions& options, double scale = 1.0) {
  return (at::randn(shape, options) * scale).set_requires_grad(true);
}

void test_residual_adaln(const at::TensorOptions& options, const std::string& device) {
  const int64_t B = 3, L = 17, D = 72;
  at::Tensor x = leaf({B, L, D}, options), y = leaf({B, L, D}, options);
  at::Tensor gate = leaf({B, D}, options, 0.5), shift = leaf({B, D}, options, 0.5), scale = leaf({B, D}, options, 0.5);
  auto [x_out, h, mean, rstd] =
      op("mpdit_native::residual_adaln_modulate")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>()
          .call(x, y, gate, shift, scale, 1e-6);
  at::Tensor ref_out = x + gate.unsqueeze(1) * y;
  at::Tensor ref_h = at::layer_norm(ref_out, {D}, {}, {}, 1e-6) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
  expect_close(device + " residual_adaln_modulate x_out", x_out, ref_out);
  expect_close(device + " residual_adaln_modulate h", h, ref_h);

  at::Tensor d_out = at::randn({B, L, D}, options), d_h = at::randn({B, L, D}, options);
  auto [dx, dy, dgate, dshift, dscale] =
      op("mpdit_native::residual_adaln_modulate_backward")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, const at::Tensor&, const at::Tensor&)>()
          .call(x.detach(), y.detach(), gate.detach(), scale.detach(), mean, rstd, d_out, d_h);
  auto want = grads({ref_out, ref_h}, {d_out, d_h}, {x, y, gate, shift, scale});
  const char* names[] = {"dx", "dy", "dgate", "dshift", "dscale"};
  at::Tensor got[] = {dx, dy, dgate, dshift, dscale};
  for (int i = 0; i < 5; ++i) expect_close(device + " residual_adaln_modulate " + names[i], got[i], want[i]);
}

void test_upsample(const at::TensorOptions& options, const std::string& device) {
  const int64_t B = 2, h = 3, w = 2, D = 24, M = 5, r = 2;
  at::Tensor wide = leaf({B, h * w, r * r * D}, options), cls = leaf({B, M, D}, options);
  auto [out, mean, rstd] =
      op("mpdit_native::upsample_shuffle_norm")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                                int64_t, int64_t, double)>()
          .call(wide, cls, r, h, w, 1e-6);
  at::Tensor image = at::pixel_shuffle(wide.transpose(1, 2).reshape({B, r * r * D, h, w}), r).flatten(2).transpose(1, 2);
  at::Tensor ref = at::layer_norm(at::cat({cls, at::gelu(image, "tanh")}, 1), {D}, {}, {}, 1e-6);
  expect_close(device + " upsample_shuffle_norm out", out, ref);

  at::Tensor d_out = at::randn(ref.sizes(), options);
  auto [dwide, dcls] =
      op("mpdit_native::upsample_shuffle_norm_backward")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const at::Tensor&, int64_t, int64_t)>()
          .call(wide.detach(), cls.detach(), mean, rstd, d_out, r, w);
  auto want = grads({ref}, {d_out}, {wide, cls});
  expect_close(device + " upsample_shuffle_norm dwide", dwide, want[0]);
  expect_close(device + " upsample_shuffle_norm dcls", dcls, want[1]);
}

void test_fine_entry(const at::TensorOptions& options, const std::string& device) {
  const int64_t B = 3, M = 4, N = 9, D = 40;
  at::Tensor refined = at::randn({B, M + N, D}, options), skip = at::randn({B, N, D}, options);
  at::Tensor pos = at::randn({N, D}, options);
  at::Tensor out = op("mpdit_native::fine_entry")
                       .typed<at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&)>()
                       .call(refined, skip, pos);
  at::Tensor ref = at::cat({refined.narrow(1, 0, M), refined.narrow(1, M, N) + skip + pos}, 1);
  expect_close(device + " fine_entry", out, ref);
}

void test_bad_input_is_a_value_error() {
  at::Tensor x = at::randn({2, 5, 8}), wrong_y = at::randn({2, 3, 8}), small = at::randn({2, 8});
  try {
    op("mpdit_native::residual_adaln_modulate")
        .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
            const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>()
        .call(x, wrong_y, small, small, small, 1e-6);
    std::printf("FAIL bad input: no error\n");
    ++failures;
  } catch (const c10::ValueError& error) {
    const std::string message = error.what_without_backtrace();
    const bool named = message.find("residual_adaln_modulate: y has shape [2, 3, 8], expected [2, 5, 8]") == 0;
    std::printf("%s bad input: %s\n", named ? "ok  " : "FAIL", message.c_str());
    failures += named ? 0 : 1;
  }
}

}  // namespace

int main() {
  at::manual_seed(0);
  std::vector<std::pair<at::TensorOptions, std::string>> devices = {{at::TensorOptions().dtype(at::kFloat), "cpu"}};
#ifdef MPDIT_WITH_CUDA
  if (at::hasCUDA()) devices.push_back({at::TensorOptions().dtype(at::kFloat).device(at::kCUDA), "cuda"});
#endif
  for (const auto& [options, device] : devices) {
    test_residual_adaln(options, device);
    test_upsample(options, device);
    test_fine_entry(options, device);
  }
  test_bad_input_is_a_value_error();
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
