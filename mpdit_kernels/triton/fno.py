"""Triton kernels for the FNO time embedding up to its last Linear (contract:
mpdit_kernels/ops/fno.py), one program per sample.

The spectral conv is a real DFT with precomputed bases (one program per sample holds the
N x C signal): Re = Cr h, Im = Ci h with Cr = cos(2 pi m n / N), Ci = -sin(...); the mode
mix Y = X W in complex arithmetic; then irfft as h' = Er Yr + Ei Yi with
Er = c_m cos(2 pi m n / N) / N, Ei = -c_m sin(...) / N, c_0 = 1 and c_m = 2 otherwise.
Eager PyTorch needs about thirty launches for the same (rfft, einsum, irfft, conv, ...).
"""
import math

import torch

from mpdit_kernels.dft import real_dft_bases
from mpdit_kernels.triton.runtime import tl, triton

INV_SQRT2 = 1.0 / math.sqrt(2.0)


# --------------------------------------------------------------------------- kernels
@triton.jit
def _fno_fwd_kernel(
    t_ptr,  # (B,) float32 times
    grid_ptr,  # (N,) float32 base grid linspace(-1, 1, N)
    lift_w_ptr,  # (C,) lift weight
    lift_b_ptr,  # (C,) lift bias
    fwd_re_ptr,  # (M, N) forward real-DFT basis Cr
    fwd_im_ptr,  # (M, N) forward basis Ci
    inv_re_ptr,  # (N, M) inverse basis Er
    inv_im_ptr,  # (N, M) inverse basis Ei
    spec_ptr,  # (LAYERS, C, C, M, 2) spectral weights (in, out, mode, real/imag)
    pw_ptr,  # (LAYERS, C, C) pointwise weights (out, in)
    pb_ptr,  # (LAYERS, C) pointwise biases
    h_ptr,  # (B, LAYERS, N, C) float32 out: each layer's input, for the backward
    a_ptr,  # (B, LAYERS, N, C) float32 out: each layer's output before GELU
    out_ptr,  # (B, C) float32 out: the grid mean of the last layer
    N: tl.constexpr, C: tl.constexpr, M: tl.constexpr, LAYERS: tl.constexpr,
):
    b = tl.program_id(0)
    n = tl.arange(0, N)
    c = tl.arange(0, C)
    points = tl.load(grid_ptr + n) + tl.load(t_ptr + b)
    h = points[:, None] * tl.load(lift_w_ptr + c)[None, :] + tl.load(lift_b_ptr + c)[None, :]  # (N, C)
    tile = (n[:, None] * C + c[None, :])
    for layer in tl.static_range(LAYERS):
        base = (b * LAYERS + layer) * N * C
        tl.store(h_ptr + base + tile, h)
        pw_t = tl.load(pw_ptr + (layer * C + c[None, :]) * C + c[:, None])  # (C_in, C_out)
        a = tl.dot(h, pw_t, input_precision="ieee") + tl.load(pb_ptr + layer * C + c)[None, :]
        # One mode at a time keeps the working set at a few C x C tiles (no register spills).
        for mode in range(M):
            x_re = tl.sum(tl.load(fwd_re_ptr + mode * N + n)[:, None] * h, axis=0)  # (C_in,) Re of this mode
            x_im = tl.sum(tl.load(fwd_im_ptr + mode * N + n)[:, None] * h, axis=0)
            w_offsets = (((layer * C + c[:, None]) * C + c[None, :]) * M + mode) * 2
            w_re = tl.load(spec_ptr + w_offsets)  # (C_in, C_out)
            w_im = tl.load(spec_ptr + w_offsets + 1)
            y_re = tl.sum(x_re[:, None] * w_re - x_im[:, None] * w_im, axis=0)  # (C_out,)
            y_im = tl.sum(x_re[:, None] * w_im + x_im[:, None] * w_re, axis=0)
            a += (tl.load(inv_re_ptr + n * M + mode)[:, None] * y_re[None, :]
                  + tl.load(inv_im_ptr + n * M + mode)[:, None] * y_im[None, :])
        tl.store(a_ptr + base + tile, a)
        if layer < LAYERS - 1:
            h = 0.5 * a * (1.0 + tl.erf(a * 0.7071067811865476))  # exact GELU
    tl.store(out_ptr + b * C + c, tl.sum(a, axis=0) / N)


# Backward per sample, layer by layer from the last (da = dout / N on every grid point):
#   dYr = Er^T da, dYi = Ei^T da                                   (through the inverse DFT)
#   dRe = sum_o dYr Wr + dYi Wi,  dIm = sum_o -dYr Wi + dYi Wr      (through the complex mix)
#   dh = Cr^T dRe + Ci^T dIm + da Pw                                (DFT and pointwise conv)
#   da_prev = dh * GELU'(a_prev),  GELU'(a) = Phi(a) + a phi(a)
# It writes each layer's da and the lift's dh; the weight gradients, sums over the batch,
# are then batched GEMMs on the host.
@triton.jit
def _fno_bwd_kernel(
    dout_ptr,  # (B, C) gradient of the grid mean
    fwd_re_ptr, fwd_im_ptr,  # (M, N) forward bases
    inv_re_ptr, inv_im_ptr,  # (N, M) inverse bases
    spec_ptr,  # (LAYERS, C, C, M, 2)
    pw_ptr,  # (LAYERS, C, C) (out, in)
    a_ptr,  # (B, LAYERS, N, C) float32 pre-GELU outputs from the forward
    da_ptr,  # (B, LAYERS, N, C) float32 out: gradient of each layer's output a
    dh0_ptr,  # (B, N, C) float32 out: gradient of the lift output
    N: tl.constexpr, C: tl.constexpr, M: tl.constexpr, LAYERS: tl.constexpr,
):
    b = tl.program_id(0)
    n = tl.arange(0, N)
    c = tl.arange(0, C)
    tile = (n[:, None] * C + c[None, :])
    da = tl.zeros([N, C], dtype=tl.float32) + (tl.load(dout_ptr + b * C + c) / N)[None, :]
    for step in tl.static_range(LAYERS):
        layer = LAYERS - 1 - step
        tl.store(da_ptr + (b * LAYERS + layer) * N * C + tile, da)
        pw = tl.load(pw_ptr + (layer * C + c[:, None]) * C + c[None, :])  # (C_out, C_in)
        dh = tl.dot(da, pw, input_precision="ieee")
        for mode in range(M):  # one mode at a time, as in the forward
            dy_re = tl.sum(tl.load(inv_re_ptr + n * M + mode)[:, None] * da, axis=0)  # (C_out,)
            dy_im = tl.sum(tl.load(inv_im_ptr + n * M + mode)[:, None] * da, axis=0)
            w_offsets = (((layer * C + c[:, None]) * C + c[None, :]) * M + mode) * 2
            w_re = tl.load(spec_ptr + w_offsets)  # (C_in, C_out)
            w_im = tl.load(spec_ptr + w_offsets + 1)
            d_re = tl.sum(dy_re[None, :] * w_re + dy_im[None, :] * w_im, axis=1)  # (C_in,)
            d_im = tl.sum(dy_im[None, :] * w_re - dy_re[None, :] * w_im, axis=1)
            dh += (tl.load(fwd_re_ptr + mode * N + n)[:, None] * d_re[None, :]
                   + tl.load(fwd_im_ptr + mode * N + n)[:, None] * d_im[None, :])
        if layer > 0:
            a_prev = tl.load(a_ptr + (b * LAYERS + layer - 1) * N * C + tile)
            cdf = 0.5 * (1.0 + tl.erf(a_prev * 0.7071067811865476))
            pdf = tl.exp(-0.5 * a_prev * a_prev) * 0.3989422804014327
            da = dh * (cdf + a_prev * pdf)
        else:
            tl.store(dh0_ptr + b * N * C + tile, dh)


# --------------------------------------------------------------------------- launchers
_BASES = {}


def dft_bases(grid_size: int, modes: int, device) -> tuple:
    """mpdit_kernels.dft's bases as the kernels read them (contiguous), cached per device."""
    key = (grid_size, modes, str(device))
    if key not in _BASES:
        _BASES[key] = tuple(basis.contiguous() for basis in real_dft_bases(grid_size, modes, device))
    return _BASES[key]


def _kernel_sizes(grid, spectral) -> tuple:
    """(layers, C, modes, N); ValueError for sizes the kernel cannot tile (tl.arange needs powers of two)."""
    layers, C, _, modes, _ = spectral.shape
    N = grid.numel()
    for name, size in (("grid size", N), ("width", C), ("modes", modes)):
        if size < 16 or size & (size - 1):
            raise ValueError(f"fno_time_features: {name} {size} is not supported: the Triton kernel needs a power "
                             "of two >= 16")
    return layers, C, modes, N


def fno_fwd(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias):
    """Launch the forward. Returns (out, h, a): the grid mean and, for the backward, each
    layer's input h and pre-GELU output a, (B, layers, N, C) float32."""
    layers, C, modes, N = _kernel_sizes(grid, spectral)
    B = t.shape[0]
    bases = dft_bases(N, modes, t.device)
    h = torch.empty((B, layers, N, C), device=t.device, dtype=torch.float32)
    a = torch.empty_like(h)
    out = torch.empty((B, C), device=t.device, dtype=torch.float32)
    _fno_fwd_kernel[(B,)](
        t.contiguous(), grid.contiguous(), lift_weight.reshape(C).contiguous(), lift_bias.contiguous(), *bases,
        spectral.contiguous(), pointwise_weight.contiguous(), pointwise_bias.contiguous(), h, a, out,
        N=N, C=C, M=modes, LAYERS=layers)
    return out, h, a


def fno_bwd(dout, t, grid, lift_weight, spectral, pointwise_weight, h, a):
    """Gradients for (t, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias)."""
    B, layers, N, C = h.shape
    modes = spectral.shape[3]
    fwd_re, fwd_im, inv_re, inv_im = dft_bases(N, modes, t.device)
    da = torch.empty_like(a)
    dh0 = torch.empty((B, N, C), device=t.device, dtype=torch.float32)
    _fno_bwd_kernel[(B,)](dout.float().contiguous(), fwd_re, fwd_im, inv_re, inv_im, spectral.contiguous(),
                          pointwise_weight.contiguous(), a, da, dh0, N=N, C=C, M=modes, LAYERS=layers)
    # Sums over the batch, as GEMMs: d(pointwise) = da^T h, d(spectral) from the modes of h and da.
    d_pointwise_weight = torch.einsum("blno,blni->loi", da, h)
    d_pointwise_bias = da.sum(dim=(0, 2))
    x_re, x_im = torch.einsum("mn,blni->blmi", fwd_re, h), torch.einsum("mn,blni->blmi", fwd_im, h)
    dy_re, dy_im = torch.einsum("nm,blno->blmo", inv_re, da), torch.einsum("nm,blno->blmo", inv_im, da)
    d_spec_re = torch.einsum("blmi,blmo->liom", x_re, dy_re) + torch.einsum("blmi,blmo->liom", x_im, dy_im)
    d_spec_im = torch.einsum("blmi,blmo->liom", x_re, dy_im) - torch.einsum("blmi,blmo->liom", x_im, dy_re)
    d_spectral = torch.stack([d_spec_re, d_spec_im], dim=-1)
    points = grid[None, :] + t[:, None]  # (B, N)
    d_lift_weight = torch.einsum("bnc,bn->c", dh0, points).reshape(lift_weight.shape)
    d_lift_bias = dh0.sum(dim=(0, 1))
    dt = torch.einsum("bnc,c->b", dh0, lift_weight.reshape(C))
    return dt, d_lift_weight, d_lift_bias, d_spectral, d_pointwise_weight, d_pointwise_bias


