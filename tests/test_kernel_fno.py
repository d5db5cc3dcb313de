"""Fused FNO time embedding (up to its final projection) against torch.fft."""
import pytest
import torch

pytest.importorskip("triton")  # the Triton kernels; the torch backend is tested without it

from kernel_checks import check_op
from mpdit_kernels.fno import dft_bases, fno_time_features, fno_time_features_ref


def fno_inputs(B, device, layers=3, width=32, modes=16, grid_size=32):
    t = torch.rand(B, device=device)
    grid = torch.linspace(-1, 1, grid_size, device=device)
    lift_weight, lift_bias = torch.randn(width, 1, device=device), torch.randn(width, device=device)
    spectral = 0.05 * torch.randn(layers, width, width, modes, 2, device=device)
    pointwise = 0.2 * torch.randn(layers, width, width, device=device)
    return t, grid, lift_weight, lift_bias, spectral, pointwise, torch.randn(layers, width, device=device)


@pytest.mark.parametrize("batch", [1, 3])
def test_fno_time_features_and_every_gradient(poisoned, device, batch):
    # fp32 only: the model runs the time embedding in fp32 whatever the autocast.
    check_op("fno_time_features", fno_time_features, fno_time_features_ref, fno_inputs(batch, device), torch.float32,
             constants=(1,))  # the base grid is a buffer


def test_real_dft_bases_are_torch_fft(device):
    signal = torch.randn(5, 32, dtype=torch.float64)
    fwd_re, fwd_im, inv_re, inv_im = (b.double().cpu() for b in dft_bases(32, 16, device))
    spectrum = torch.fft.rfft(signal)[:, :16]
    torch.testing.assert_close(signal @ fwd_re.T, spectrum.real, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(signal @ fwd_im.T, spectrum.imag, rtol=1e-6, atol=1e-6)
    back = spectrum.real @ inv_re.T + spectrum.imag @ inv_im.T
    torch.testing.assert_close(back, torch.fft.irfft(spectrum, n=32), rtol=1e-6, atol=1e-6)


def test_opcheck(device):
    args = [t.requires_grad_() if t.is_floating_point() and i != 1 else t for i, t in enumerate(fno_inputs(2, device))]
    torch.library.opcheck(torch.ops.mpdit.fno_time_features.default, tuple(args))


@pytest.mark.parametrize("change, message", [
    (lambda a: (a[0][:, None], *a[1:]), r"t must be a \(B,\) tensor"),
    (lambda a: (*a[:4], a[4][..., :1], *a[5:]), r"spectral weights must be \(layers, C, C, modes, 2\)"),
    (lambda a: (a[0], a[1][:24], *a[2:]), r"grid size 24 is not supported: the kernel needs a power of two >= 16"),
    (lambda a: (*a[:4], a[4][:, :, :, :8], *a[5:]), r"modes 8 is not supported"),
    (lambda a: (*a[:5], a[5][:2], a[6]), r"pointwise weights must be \(3, 32, 32\)"),
    (lambda a: (a[0].double(), *a[1:]), r"t has dtype torch.float64, expected float32"),
])
def test_bad_inputs(device, change, message):
    with pytest.raises(ValueError, match=message):
        fno_time_features(*change(fno_inputs(2, device)))
