"""MPDiT's FNO time embedding up to its last Linear (docs/model.md, step 3), defined once.

t -> grid linspace(-1, 1, N) + t -> lift Linear(1, C) -> `layers` Fourier layers (spectral
conv over the lowest M modes + pointwise 1x1 conv; exact GELU after all but the last)
-> mean over the grid: (B, C). The final Linear(C, D) stays a GEMM in the model.

Contract every implementation keeps (Backend.fno), all float32 (the embedding runs in fp32):
    t (B,); grid (N,); lift_weight (C, 1), lift_bias (C,); spectral (layers, C, C, M, 2),
    complex weights (in, out, mode) as real pairs; pointwise_weight (layers, C, C) (out, in);
    pointwise_bias (layers, C). Output (B, C). Saved for backward: t, grid, lift_weight,
    spectral, pointwise_weight, and h and a (B, layers, N, C): each layer's input and its
    pre-GELU output.
    forward(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias) -> (out, h, a)
    backward(dout, t, grid, lift_weight, spectral, pointwise_weight, h, a)
        -> (dt, dlift_weight, dlift_bias, dspectral, dpointwise_weight, dpointwise_bias)
"""
import torch

from mpdit_kernels.backend import BACKENDS, TORCH, Backend, require
from mpdit_kernels.checks import check_rank, check_tensor
from mpdit_kernels.dft import real_dft_bases

Tensor = torch.Tensor
FP32 = (torch.float32,)


# --------------------------------------------------------------------------- reference
def fno_time_features_ref(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias):
    """Plain PyTorch in real arithmetic, the layout of mpdit.models.embeddings.FNOTimeEmbedding.

    rfft -> keep the lowest M modes -> irfft, written as products with cos / sin bases
    (below the Nyquist mode; the DC term once, the others twice in the inverse), so that
    torch.compile generates code for it: Inductor has no code generation for complex
    tensors (mpdit_kernels.dft). tests/test_op_fno.py checks it against torch.fft.
    """
    fwd_re, fwd_im, inv_re, inv_im = real_dft_bases(grid.numel(), spectral.shape[3], t.device)
    points = grid[None, :, None] + t.float()[:, None, None]  # (B, N, 1)
    h = points * lift_weight.reshape(1, 1, -1) + lift_bias  # (B, N, C)
    for layer in range(spectral.shape[0]):
        x_re, x_im = fwd_re @ h, fwd_im @ h  # (B, M, C): rfft, lowest M modes
        w_re, w_im = spectral[layer, ..., 0], spectral[layer, ..., 1]  # (in, out, M)
        y_re = torch.einsum("bmi,iom->bmo", x_re, w_re) - torch.einsum("bmi,iom->bmo", x_im, w_im)
        y_im = torch.einsum("bmi,iom->bmo", x_re, w_im) + torch.einsum("bmi,iom->bmo", x_im, w_re)
        h_next = inv_re @ y_re + inv_im @ y_im + h @ pointwise_weight[layer].T + pointwise_bias[layer]  # (B, N, C)
        h = torch.nn.functional.gelu(h_next) if layer < spectral.shape[0] - 1 else h_next
    return h.mean(dim=1)


def check_inputs(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias) -> None:
    """ValueError for shapes or dtypes no implementation takes."""
    op = "fno_time_features"
    B = check_rank(op, "t", t, 1, "(B,)")[0]
    layers, C, _, modes, _ = check_rank(op, "spectral", spectral, 5, "(layers, C, C, modes, 2)")
    N = check_rank(op, "grid", grid, 1, "(N,)")[0]
    for name, tensor, shape in (("t", t, (B,)), ("grid", grid, (N,)), ("lift_weight", lift_weight, (C, 1)),
                                ("lift_bias", lift_bias, (C,)), ("spectral", spectral, (layers, C, C, modes, 2)),
                                ("pointwise_weight", pointwise_weight, (layers, C, C)),
                                ("pointwise_bias", pointwise_bias, (layers, C))):
        check_tensor(op, name, tensor, shape, dtypes=FP32)


# --------------------------------------------------------------------------- registration
@torch.library.custom_op("mpdit::fno_time_features", mutates_args=())
def _fno_op(t: Tensor, grid: Tensor, lift_weight: Tensor, lift_bias: Tensor, spectral: Tensor,
            pointwise_weight: Tensor, pointwise_bias: Tensor, backend: str) -> tuple[Tensor, Tensor, Tensor]:
    kernel = require(backend, "fno_time_features", t).fno
    return kernel.forward(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias)


@_fno_op.register_fake
def _(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias, backend):
    layers, C = spectral.shape[0], spectral.shape[1]
    saved = t.new_empty((t.shape[0], layers, grid.shape[0], C), dtype=torch.float32)
    return t.new_empty((t.shape[0], C), dtype=torch.float32), saved, torch.empty_like(saved)


@torch.library.custom_op("mpdit::fno_time_features_backward", mutates_args=())
def _fno_bwd_op(dout: Tensor, t: Tensor, grid: Tensor, lift_weight: Tensor, spectral: Tensor,
                pointwise_weight: Tensor, h: Tensor, a: Tensor,
                backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return BACKENDS[backend].fno.backward(dout, t, grid, lift_weight, spectral, pointwise_weight, h, a)


@_fno_bwd_op.register_fake
def _(dout, t, grid, lift_weight, spectral, pointwise_weight, h, a, backend):
    layers, C = spectral.shape[0], spectral.shape[1]
    return (t.new_empty(t.shape), lift_weight.new_empty(lift_weight.shape), lift_weight.new_empty((C,)),
            spectral.new_empty(spectral.shape), pointwise_weight.new_empty(pointwise_weight.shape),
            pointwise_weight.new_empty((layers, C)))


def _fno_setup(ctx, inputs, output):
    t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(t, grid, lift_weight, spectral, pointwise_weight, output[1], output[2])


def _fno_backward(ctx, dout, dh, da):
    t, grid, lift_weight, spectral, pointwise_weight, h, a = ctx.saved_tensors
    grads = _fno_bwd_op(dout, t, grid, lift_weight, spectral, pointwise_weight, h, a, ctx.backend)
    dt, dlift_weight, dlift_bias, dspectral, dpointwise_weight, dpointwise_bias = grads
    return dt, None, dlift_weight, dlift_bias, dspectral, dpointwise_weight, dpointwise_bias, None


_fno_op.register_autograd(_fno_backward, setup_context=_fno_setup)


# --------------------------------------------------------------------------- the op
def fno_time_features(t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias,
                      backend: Backend = TORCH):
    """(B, C) grid mean of the FNO layers for times t (B,); the weights as in the contract above."""
    args = (t, grid, lift_weight, lift_bias, spectral, pointwise_weight, pointwise_bias)
    check_inputs(*args)  # every backend, the reference too
    impl = backend.pick(t)
    if impl.fno is None:
        return fno_time_features_ref(*args)
    return _fno_op(*args, impl.name)[0]
