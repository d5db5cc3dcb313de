"""MPDiT's stage transition after the expand GEMM (docs/model.md, step 7), defined once.

    out = LayerNorm(cat(cls, GELU_tanh(pixel_shuffle(wide, r))))     (no affine, eps 1e-6)

Contract every implementation keeps (Backend.upsample):
    wide (B, h*w, r*r*D), the expand projection of the h x w coarse image tokens, channel
    d*r*r + i*r + j going to fine cell (r*row + i, r*col + j) (F.pixel_shuffle's order);
    cls (B, m, D), m >= 0 class tokens. float32, bfloat16 or float16, mixed allowed.
    out (B, m + r*r*h*w, D) in the promoted dtype; mean and rstd (B, L) float32.
    Saved for backward: wide, cls, mean, rstd (GELU is recomputed from wide).
    forward(wide, cls, ratio, grid_h, grid_w, eps) -> (out, mean, rstd)
    backward(wide, cls, mean, rstd, dout, ratio, grid_w) -> (dwide, dcls), in their inputs' dtypes
"""
import torch
import torch.nn.functional as F

from mpdit_kernels.backend import BACKENDS, TORCH, Backend, require
from mpdit_kernels.checks import check_rank, check_tensor, promoted, same_device

EPS = 1e-6
Tensor = torch.Tensor


# --------------------------------------------------------------------------- reference
def upsample_shuffle_norm_ref(wide, cls, ratio: int, grid_h: int, grid_w: int):
    """Plain PyTorch: the torch backend, and what tests and benchmarks compare against."""
    B, tokens, channels = wide.shape
    image = wide.transpose(1, 2).reshape(B, channels, grid_h, grid_w)
    image = F.pixel_shuffle(image, ratio).flatten(2).transpose(1, 2)  # (B, r*r*h*w, D)
    image = F.gelu(image, approximate="tanh")
    tokens = torch.cat([cls, image], dim=1)
    return F.layer_norm(tokens, tokens.shape[-1:], eps=EPS)


def check_inputs(wide, cls, ratio, grid_h, grid_w) -> None:
    """ValueError for shapes, dtypes or devices no implementation takes."""
    op = "upsample_shuffle_norm"
    B, tokens, channels = check_rank(op, "wide", wide, 3, "(B, tokens, channels)")
    if tokens != grid_h * grid_w:
        raise ValueError(f"{op}: wide has {tokens} tokens, expected grid_h * grid_w = {grid_h * grid_w}")
    if ratio < 2 or channels % (ratio * ratio):
        raise ValueError(f"{op}: ratio={ratio}: expected >= 2 dividing wide's {channels} channels into ratio^2 groups")
    check_tensor(op, "wide", wide, (B, tokens, channels))
    m = check_rank(op, "cls", cls, 3, "(B, tokens, channels)")[1]
    check_tensor(op, "cls", cls, (B, m, channels // (ratio * ratio)))
    same_device(op, wide=wide, cls=cls)


# --------------------------------------------------------------------------- registration
@torch.library.custom_op("mpdit::upsample_shuffle_norm", mutates_args=())
def _upsample_op(wide: Tensor, cls: Tensor, ratio: int, grid_h: int, grid_w: int,
                 backend: str) -> tuple[Tensor, Tensor, Tensor]:
    return require(backend, "upsample_shuffle_norm", wide).upsample.forward(wide, cls, ratio, grid_h, grid_w, EPS)


@_upsample_op.register_fake
def _(wide, cls, ratio, grid_h, grid_w, backend):
    B, M, D = cls.shape
    L = M + ratio * ratio * grid_h * grid_w
    stats = wide.new_empty((B, L), dtype=torch.float32)
    return wide.new_empty((B, L, D), dtype=promoted(wide, cls)), stats, torch.empty_like(stats)


@torch.library.custom_op("mpdit::upsample_shuffle_norm_backward", mutates_args=())
def _upsample_bwd_op(wide: Tensor, cls: Tensor, mean: Tensor, rstd: Tensor, dout: Tensor, ratio: int, grid_w: int,
                     backend: str) -> tuple[Tensor, Tensor]:
    return BACKENDS[backend].upsample.backward(wide, cls, mean, rstd, dout, ratio, grid_w)


@_upsample_bwd_op.register_fake
def _(wide, cls, mean, rstd, dout, ratio, grid_w, backend):
    return wide.new_empty(wide.shape), cls.new_empty(cls.shape)


def _upsample_setup(ctx, inputs, output):
    wide, cls, ratio, grid_h, grid_w, backend = inputs
    ctx.ratio, ctx.grid_w, ctx.backend = ratio, grid_w, backend
    ctx.save_for_backward(wide, cls, output[1], output[2])


def _upsample_backward(ctx, dout, dmean, drstd):
    wide, cls, mean, rstd = ctx.saved_tensors
    dwide, dcls = _upsample_bwd_op(wide, cls, mean, rstd, dout, ctx.ratio, ctx.grid_w, ctx.backend)
    return dwide, dcls, None, None, None, None


_upsample_op.register_autograd(_upsample_backward, setup_context=_upsample_setup)


# --------------------------------------------------------------------------- the op
def upsample_shuffle_norm(wide, cls, ratio: int, grid_h: int, grid_w: int, backend: Backend = TORCH):
    """LayerNorm(cat(cls, GELU(pixel_shuffle(wide)))): wide (B, h*w, r*r*D), cls (B, m, D) -> (B, m + r*r*h*w, D)."""
    check_inputs(wide, cls, ratio, grid_h, grid_w)  # every backend, the reference too
    impl = backend.pick(wide)
    if impl.upsample is None:
        return upsample_shuffle_norm_ref(wide, cls, ratio, grid_h, grid_w)
    return _upsample_op(wide, cls, ratio, grid_h, grid_w, impl.name)[0]
