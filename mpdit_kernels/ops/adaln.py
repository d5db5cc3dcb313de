"""Fused residual + shared-AdaLN modulation (docs/model.md, steps 4-5), defined once.

    x_out = x + gate * y                                  (residual variant)
    h     = LayerNorm(x_out) * (1 + scale) + shift        (no affine, eps 1e-6)

The plain variant (block entry, final layer) is h = LayerNorm(x) * (1 + scale) + shift.

Contract every implementation keeps (Backend.adaln):
    x, y (B, L, D) with contiguous rows (any batch / token strides); gate, shift, scale
    (B, D), one vector per sample shared by every token; float32, bfloat16 or float16,
    mixed allowed. x_out takes eager PyTorch's promoted dtype; h is written in h_dtype:
    under autocast the autocast dtype (h only feeds a matrix product, whose input cast would
    round it to that dtype anyway: written once, half the bytes, no cast kernel after it, and
    its gradient arrives in that dtype too), else the promoted dtype; mean and rstd (B, L)
    float32. Saved for backward: x, y, gate, scale, mean, rstd (x_out and h are not kept).
    forward(x, y | None, gate | None, shift, scale, eps, h_dtype) -> (x_out | None, h, mean, rstd)
    backward(x, y | None, gate | None, scale, mean, rstd, dx_out | None, dh)
        -> (dx, dy | None, dgate | None, dshift, dscale), each in its input's dtype
           (dshift in scale's: autograd casts it to shift's, as it does every gradient).
"""
import torch
import torch.nn.functional as F

from mpdit_kernels.backend import BACKENDS, TORCH, Backend, require
from mpdit_kernels.checks import check_rank, check_tensor, promoted, same_device

EPS = 1e-6
Tensor = torch.Tensor


# --------------------------------------------------------------------------- reference
def adaln_modulate_ref(x, shift, scale):
    """Plain PyTorch: the torch backend, and what tests and benchmarks compare against."""
    normed = F.layer_norm(x, x.shape[-1:], eps=EPS)
    return normed * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def residual_adaln_modulate_ref(x, y, gate, shift, scale):
    x_out = x + gate.unsqueeze(1) * y
    return x_out, adaln_modulate_ref(x_out, shift, scale)


def h_dtype_for(x, *inputs) -> torch.dtype:
    """The dtype h is written in (see the contract): the autocast dtype under autocast."""
    kind = x.device.type  # the meta device (the FLOP audit) has no autocast state to ask
    if kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return promoted(x, *inputs)


def check_inputs(op, x, y, gate, shift, scale) -> None:
    """ValueError for shapes, dtypes or devices no implementation takes."""
    B, L, D = check_rank(op, "x", x, 3, "(B, L, D)")
    check_tensor(op, "x", x, (B, L, D))
    if y is not None:
        check_tensor(op, "y", y, (B, L, D))
        check_tensor(op, "gate", gate, (B, D))
    check_tensor(op, "shift", shift, (B, D))
    check_tensor(op, "scale", scale, (B, D))
    same_device(op, x=x, y=y, gate=gate, shift=shift, scale=scale)


def _forward_like(x, y, gate, h_dtype) -> tuple:
    """Empty outputs with the contract's shapes and dtypes: the fake implementations."""
    B, L, D = x.shape
    stats = x.new_empty((B, L), dtype=torch.float32)
    h = x.new_empty((B, L, D), dtype=h_dtype)
    x_out = None if y is None else x.new_empty((B, L, D), dtype=promoted(x, y, gate))
    return x_out, h, stats, torch.empty_like(stats)


def _like_twice(tensor):
    return tensor.new_empty(tensor.shape), tensor.new_empty(tensor.shape)


# --------------------------------------------------------------------------- residual variant
@torch.library.custom_op("mpdit::residual_adaln_modulate", mutates_args=())
def _residual_op(x: Tensor, y: Tensor, gate: Tensor, shift: Tensor, scale: Tensor, h_dtype: torch.dtype,
                 backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return require(backend, "residual_adaln_modulate", x).adaln.forward(x, y, gate, shift, scale, EPS, h_dtype)


@_residual_op.register_fake
def _(x, y, gate, shift, scale, h_dtype, backend):
    return _forward_like(x, y, gate, h_dtype)


@torch.library.custom_op("mpdit::residual_adaln_modulate_backward", mutates_args=())
def _residual_bwd_op(x: Tensor, y: Tensor, gate: Tensor, scale: Tensor, mean: Tensor, rstd: Tensor, dx_out: Tensor,
                     dh: Tensor, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return BACKENDS[backend].adaln.backward(x, y, gate, scale, mean, rstd, dx_out, dh)


@_residual_bwd_op.register_fake
def _(x, y, gate, scale, mean, rstd, dx_out, dh, backend):
    return x.new_empty(x.shape), y.new_empty(y.shape), gate.new_empty(gate.shape), *_like_twice(scale)


def _residual_setup(ctx, inputs, output):
    x, y, gate, shift, scale, h_dtype, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(x, y, gate, scale, output[2], output[3])


def _residual_backward(ctx, dx_out, dh, dmean, drstd):
    x, y, gate, scale, mean, rstd = ctx.saved_tensors
    dx, dy, dgate, dshift, dscale = _residual_bwd_op(x, y, gate, scale, mean, rstd, dx_out, dh, ctx.backend)
    return dx, dy, dgate, dshift, dscale, None, None


_residual_op.register_autograd(_residual_backward, setup_context=_residual_setup)


# --------------------------------------------------------------------------- plain variant
@torch.library.custom_op("mpdit::adaln_modulate", mutates_args=())
def _plain_op(x: Tensor, shift: Tensor, scale: Tensor, h_dtype: torch.dtype,
              backend: str) -> tuple[Tensor, Tensor, Tensor]:
    _, h, mean, rstd = require(backend, "adaln_modulate", x).adaln.forward(x, None, None, shift, scale, EPS, h_dtype)
    return h, mean, rstd


@_plain_op.register_fake
def _(x, shift, scale, h_dtype, backend):
    return _forward_like(x, None, None, h_dtype)[1:]


@torch.library.custom_op("mpdit::adaln_modulate_backward", mutates_args=())
def _plain_bwd_op(x: Tensor, scale: Tensor, mean: Tensor, rstd: Tensor, dh: Tensor,
                  backend: str) -> tuple[Tensor, Tensor, Tensor]:
    dx, _, _, dshift, dscale = BACKENDS[backend].adaln.backward(x, None, None, scale, mean, rstd, None, dh)
    return dx, dshift, dscale


@_plain_bwd_op.register_fake
def _(x, scale, mean, rstd, dh, backend):
    return x.new_empty(x.shape), *_like_twice(scale)


def _plain_setup(ctx, inputs, output):
    x, shift, scale, h_dtype, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(x, scale, output[1], output[2])


def _plain_backward(ctx, dh, dmean, drstd):
    x, scale, mean, rstd = ctx.saved_tensors
    return *_plain_bwd_op(x, scale, mean, rstd, dh, ctx.backend), None, None


_plain_op.register_autograd(_plain_backward, setup_context=_plain_setup)


# --------------------------------------------------------------------------- the ops
def residual_adaln_modulate(x, y, gate, shift, scale, backend: Backend = TORCH):
    """(x_out, h) = (x + gate * y, LayerNorm(x_out) * (1 + scale) + shift); x, y (B, L, D), the rest (B, D).
    h in the autocast dtype under autocast (the contract above)."""
    check_inputs("residual_adaln_modulate", x, y, gate, shift, scale)  # every backend, the reference too
    impl = backend.pick(x)
    h_dtype = h_dtype_for(x, y, gate, shift, scale)
    if impl.adaln is None:
        x_out, h = residual_adaln_modulate_ref(x, y, gate, shift, scale)
        return x_out, h.to(h_dtype)
    x_out, h, _, _ = _residual_op(x, y, gate, shift, scale, h_dtype, impl.name)
    return x_out, h


def adaln_modulate(x, shift, scale, backend: Backend = TORCH):
    """LayerNorm(x) * (1 + scale) + shift; x (B, L, D), shift and scale (B, D); in the autocast
    dtype under autocast (the contract above)."""
    check_inputs("adaln_modulate", x, None, None, shift, scale)  # every backend, the reference too
    impl = backend.pick(x)
    h_dtype = h_dtype_for(x, shift, scale)
    if impl.adaln is None:
        return adaln_modulate_ref(x, shift, scale).to(h_dtype)
    return _plain_op(x, shift, scale, h_dtype, impl.name)[0]
