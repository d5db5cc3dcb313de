"""fno_time_features (the FNO time embedding up to its last Linear) against torch.fft, on the
backends that implement it (the native extension has no FNO kernel: its models run torch's)."""
import pytest
import torch

from helpers.kernels import check_op
from mpdit_kernels import ops
from mpdit_kernels.dft import real_dft_bases
from mpdit_kernels.ops import fno_time_features_ref


@pytest.fixture
def fno_backend(fused):
    if fused.backend.fno is None:
        pytest.skip(f"kernel_backend={fused.backend.name!r} runs the reference for this op")
    return fused


def fno_inputs(B, device, layers=3, width=32, modes=16, grid_size=32):
    t = torch.rand(B, device=device)
    grid = torch.linspace(-1, 1, grid_size, device=device)
    lift_weight, lift_bias = torch.randn(width, 1, device=device), torch.randn(width, device=device)
    spectral = 0.05 * torch.randn(layers, width, width, modes, 2, device=device)
    pointwise = 0.2 * torch.randn(layers, width, width, device=device)
    return t, grid, lift_weight, lift_bias, spectral, pointwise, torch.randn(layers, width, device=device)


@pytest.mark.parametrize("batch", [1, 3])
def test_fno_time_features_and_every_gradient(poisoned, fno_backend, batch):
    # fp32 only: the model runs the time embedding in fp32 whatever the autocast.
    check_op("fno_time_features", lambda *a: ops.fno_time_features(*a, backend=fno_backend.backend),
             fno_time_features_ref, fno_inputs(batch, fno_backend.device), torch.float32,
             constants=(1,))  # the base grid is a buffer


def fno_with_torch_fft(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias):
    """The FNO layers as neural-operator code writes them: rfft, complex mode mix, irfft."""
    modes = spectral.shape[3]
    h = ((grid[None, :, None] + t[:, None, None]) * lift_weight.reshape(1, 1, -1) + lift_bias).transpose(1, 2)
    for layer in range(spectral.shape[0]):
        x_ft = torch.fft.rfft(h, dim=-1)[..., :modes]
        mixed = torch.einsum("bim,iom->bom", x_ft, torch.view_as_complex(spectral[layer].contiguous()))
        h_next = torch.fft.irfft(mixed, n=h.shape[-1], dim=-1)
        h_next = h_next + torch.einsum("oi,bin->bon", pointwise_weight[layer], h) + pointwise_bias[layer][None, :, None]
        h = torch.nn.functional.gelu(h_next) if layer < spectral.shape[0] - 1 else h_next
    return h.mean(dim=-1)


def test_reference_is_the_torch_fft_formulation():
    """The real-arithmetic reference (which torch.compile can generate code for) computes the
    torch.fft formulation: output and every gradient, against it in float64."""
    inputs = [x.requires_grad_() for x in fno_inputs(3, "cpu")]
    out = fno_time_features_ref(*inputs)
    wide = [x.detach().double().requires_grad_() for x in inputs]
    expected = fno_with_torch_fft(*wide)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((out * weights.float()).sum(), inputs)
    expected_grads = torch.autograd.grad((expected * weights).sum(), wide)
    for name, got, want in zip(("t", "grid", "lift_weight", "lift_bias", "spectral", "pointwise_weight",
                                "pointwise_bias"), grads, expected_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5, msg=lambda m: f"d{name}: {m}")


def test_real_dft_bases_are_torch_fft(device):
    signal = torch.randn(5, 32, dtype=torch.float64)
    fwd_re, fwd_im, inv_re, inv_im = (b.double().cpu() for b in real_dft_bases(32, 16, device))
    spectrum = torch.fft.rfft(signal)[:, :16]
    torch.testing.assert_close(signal @ fwd_re.T, spectrum.real, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(signal @ fwd_im.T, spectrum.imag, rtol=1e-6, atol=1e-6)
    back = spectrum.real @ inv_re.T + spectrum.imag @ inv_im.T
    torch.testing.assert_close(back, torch.fft.irfft(spectrum, n=32), rtol=1e-6, atol=1e-6)


def test_opcheck(fno_backend):
    args = [t.requires_grad_() if i != 1 else t for i, t in enumerate(fno_inputs(2, fno_backend.device))]
    torch.library.opcheck(torch.ops.mpdit.fno_time_features.default, (*args, fno_backend.backend.name))


@pytest.mark.parametrize("change, message", [
    (lambda a: (a[0][:, None], *a[1:]), r"t must be a \(B,\) tensor"),
    (lambda a: (*a[:4], a[4][..., :1], *a[5:]),
     r"spectral has shape \(3, 32, 32, 16, 1\), expected \(3, 32, 32, 16, 2\)"),
    (lambda a: (*a[:5], a[5][:2], a[6]), r"pointwise_weight has shape \(2, 32, 32\), expected \(3, 32, 32\)"),
    (lambda a: (a[0].double(), *a[1:]), r"t has dtype torch.float64, expected float32"),
])
def test_bad_inputs(every_backend, change, message):
    with pytest.raises(ValueError, match=f"fno_time_features: {message}"):
        ops.fno_time_features(*change(fno_inputs(2, every_backend.device)), backend=every_backend.backend)


@pytest.mark.parametrize("change, message", [
    (lambda a: (a[0], a[1][:24], *a[2:]), r"grid size 24 is not supported: the Triton kernel needs a power of two"),
    (lambda a: (*a[:4], a[4][:, :, :, :8], *a[5:]), r"modes 8 is not supported"),
])
def test_sizes_the_triton_kernel_cannot_tile(fno_backend, change, message):
    if fno_backend.backend.name != "triton":
        pytest.skip("a limit of the Triton kernel")
    with pytest.raises(ValueError, match=message):
        ops.fno_time_features(*change(fno_inputs(2, fno_backend.device)), backend=fno_backend.backend)
