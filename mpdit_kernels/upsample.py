"""MPDiT's stage transition, fused (notes, steps 7-8).

upsample_shuffle_norm: the expand projection wide (B, h*w, r*r*D), already computed by a
    GEMM, pixel-shuffled into r x r neighbourhoods (B, r*r*h*w, D), GELU (tanh), the class
    tokens (B, m, D) put in front, LayerNorm (no affine) over every token: one kernel.
fine_entry: the refine output (B, m + N, D) plus, on its N image tokens, the skip
    projection (B, N, D) and the position table (N, D): one pass instead of three.
"""
from typing import Optional

import torch

from mpdit_kernels._launch import check_tensor, require_triton, row_block, same_device
from mpdit_kernels._triton import tl, triton

EPS = 1e-6
ROWS_PER_PROGRAM = 16


# --------------------------------------------------------------------------- kernels
@triton.jit
def _gather_row(wide_ptr, cls_ptr, b, row, cols, L, D, M, W, R: tl.constexpr):
    """Row `row` of cat(cls, GELU(pixel_shuffle(wide))) before the norm, in fp32.

    Also returns the pre-GELU value u, the wide offsets it came from and the two masks.
    Output image row f = (r_i * R + a) * (W * R) + c_j * R + b2 reads wide row r_i * W + c_j,
    channel d * R * R + a * R + b2 (F.pixel_shuffle's channel order).
    """
    live = cols < tl.where(row < L, D, 0)
    is_image = row >= M
    image_mask = cols < tl.where(is_image & (row < L), D, 0)
    cls_mask = cols < tl.where(row < M, D, 0)
    f = tl.maximum(row - M, 0)
    fine_w = W * R
    fr = f // fine_w
    fc = f % fine_w
    src_row = (fr // R) * W + fc // R
    wide_rows = (L - M) // (R * R)
    wide_offsets = (b * wide_rows + src_row) * (D * R * R) + cols * (R * R) + (fr % R) * R + fc % R
    u = tl.load(wide_ptr + wide_offsets, mask=image_mask, other=0.0).to(tl.float32)
    c = tl.load(cls_ptr + (b * M + row) * D + cols, mask=cls_mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(2.0 * 0.7978845608028654 * (u + 0.044715 * u * u * u))  # 0.5 (1 + tanh z) = sigmoid(2z)
    v = tl.where(image_mask, u * sig, c)
    return v, u, sig, wide_offsets, live, image_mask, cls_mask


@triton.jit
def _upsample_fwd_kernel(
    wide_ptr,  # (B, h*w, R*R*D) contiguous: the expand projection
    cls_ptr,  # (B, M, D) contiguous: class tokens
    out_ptr,  # (B, L, D) contiguous, L = M + R*R*h*w
    mean_ptr,  # (B, L) float32
    rstd_ptr,  # (B, L) float32
    L, D, M, W, eps,
    R: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    for i in range(ROWS):
        row = tl.program_id(1) * ROWS + i
        v, u, sig, wide_offsets, live, image_mask, cls_mask = _gather_row(wide_ptr, cls_ptr, b, row, cols, L, D, M, W, R)
        mean = tl.sum(v, axis=0) / D
        centred = tl.where(live, v - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / D + eps)
        tl.store(out_ptr + (b * L + row) * D + cols, (centred * rstd).to(out_ptr.dtype.element_ty), mask=live)
        tl.store(mean_ptr + b * L + row, mean, mask=row < L)
        tl.store(rstd_ptr + b * L + row, rstd, mask=row < L)


# Backward, per row, with n the normalised row and v = GELU(u) (or the class token):
#   dv = rstd * (dout - mean(dout) - n * mean(dout * n))               (LayerNorm, no affine)
#   class rows: dcls = dv;  image rows: du = dv * GELU'(u), scattered back to wide's layout,
#   GELU'(u) = s + u * s * (1 - s) * 2 c (1 + 3 * 0.044715 u^2), s = sigmoid(2 c (u + 0.044715 u^3)).
# Every element of wide feeds exactly one output element, so the scatter needs no atomics.
@triton.jit
def _upsample_bwd_kernel(
    wide_ptr,  # (B, h*w, R*R*D)
    cls_ptr,  # (B, M, D)
    mean_ptr,  # (B, L) float32
    rstd_ptr,  # (B, L) float32
    dout_ptr,  # (B, L, D) contiguous
    dwide_ptr,  # (B, h*w, R*R*D) contiguous
    dcls_ptr,  # (B, M, D) contiguous
    L, D, M, W,
    R: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    for i in range(ROWS):
        row = tl.program_id(1) * ROWS + i
        v, u, sig, wide_offsets, live, image_mask, cls_mask = _gather_row(wide_ptr, cls_ptr, b, row, cols, L, D, M, W, R)
        mean = tl.load(mean_ptr + b * L + row, mask=row < L, other=0.0)
        rstd = tl.load(rstd_ptr + b * L + row, mask=row < L, other=0.0)
        n = tl.where(live, (v - mean) * rstd, 0.0)
        dout = tl.load(dout_ptr + (b * L + row) * D + cols, mask=live, other=0.0).to(tl.float32)
        dv = rstd * (dout - tl.sum(dout, axis=0) / D - n * (tl.sum(dout * n, axis=0) / D))
        tl.store(dcls_ptr + (b * M + row) * D + cols, dv.to(dcls_ptr.dtype.element_ty), mask=cls_mask)
        dgelu = sig + u * sig * (1.0 - sig) * 2.0 * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * u * u)
        tl.store(dwide_ptr + wide_offsets, (dv * dgelu).to(dwide_ptr.dtype.element_ty), mask=image_mask)


@triton.jit
def _fine_entry_kernel(
    refined_ptr,  # (B, L, D) contiguous, L = M + N
    skip_ptr,  # (B, N, D) contiguous; unused without skip
    pos_ptr,  # (N, D) contiguous
    out_ptr,  # (B, L, D) contiguous
    L, D, M,
    HAS_SKIP: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    for i in range(ROWS):
        row = tl.program_id(1) * ROWS + i
        live = cols < tl.where(row < L, D, 0)
        image = cols < tl.where((row >= M) & (row < L), D, 0)
        image_row = tl.maximum(row - M, 0)
        x = tl.load(refined_ptr + (b * L + row) * D + cols, mask=live, other=0.0).to(tl.float32)
        if HAS_SKIP:
            x += tl.load(skip_ptr + (b * (L - M) + image_row) * D + cols, mask=image, other=0.0).to(tl.float32)
        x += tl.load(pos_ptr + image_row * D + cols, mask=image, other=0.0).to(tl.float32)
        tl.store(out_ptr + (b * L + row) * D + cols, x.to(out_ptr.dtype.element_ty), mask=live)


# --------------------------------------------------------------------------- launchers
def _batch_shape(op, name, tensor):
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise ValueError(f"{op}: {name} must be a (B, tokens, channels) tensor, got "
                         f"{tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__}")
    return tensor.shape


def check_upsample(wide, cls, ratio, grid_h, grid_w):
    """ValueError for bad shapes, dtypes or devices (shared with the extension's wrappers); returns (B, D)."""
    op = "upsample_shuffle_norm"
    B, tokens, channels = _batch_shape(op, "wide", wide)
    if tokens != grid_h * grid_w:
        raise ValueError(f"{op}: wide has {tokens} tokens, expected grid_h * grid_w = {grid_h * grid_w}")
    if ratio < 2 or channels % (ratio * ratio):
        raise ValueError(f"{op}: ratio={ratio}: expected >= 2 dividing wide's {channels} channels into ratio^2 groups")
    D = channels // (ratio * ratio)
    check_tensor(op, "wide", wide, (B, tokens, channels))
    _, m, _ = _batch_shape(op, "cls", cls)
    check_tensor(op, "cls", cls, (B, m, D))
    same_device(op, wide=wide, cls=cls)
    return B, D


def upsample_fwd(wide, cls, ratio, grid_h, grid_w):
    B, D = check_upsample(wide, cls, ratio, grid_h, grid_w)
    require_triton("upsample_shuffle_norm", wide)
    M = cls.shape[1]
    L = M + ratio * ratio * grid_h * grid_w
    block, warps = row_block("upsample_shuffle_norm", D)
    out = torch.empty((B, L, D), device=wide.device, dtype=torch.promote_types(wide.dtype, cls.dtype))
    mean = torch.empty((B, L), device=wide.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    _upsample_fwd_kernel[(B, triton.cdiv(L, ROWS_PER_PROGRAM))](
        wide.contiguous(), cls.contiguous(), out, mean, rstd, L, D, M, grid_w, EPS,
        R=ratio, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return out, mean, rstd


def upsample_bwd(wide, cls, mean, rstd, dout, ratio, grid_w):
    B, L = mean.shape
    M, D = cls.shape[1], cls.shape[2]
    block, warps = row_block("upsample_shuffle_norm backward", D)
    dwide = torch.empty(wide.shape, device=wide.device, dtype=wide.dtype)
    dcls = torch.empty(cls.shape, device=cls.device, dtype=cls.dtype)
    _upsample_bwd_kernel[(B, triton.cdiv(L, ROWS_PER_PROGRAM))](
        wide.contiguous(), cls.contiguous(), mean, rstd, dout.contiguous(), dwide, dcls, L, D, M, grid_w,
        R=ratio, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return dwide, dcls


def check_fine_entry(refined, skip, pos):
    """ValueError for bad shapes, dtypes or devices (shared with the extension's wrappers)."""
    op = "fine_entry"
    B, L, D = _batch_shape(op, "refined", refined)
    check_tensor(op, "refined", refined, (B, L, D))
    if not isinstance(pos, torch.Tensor) or pos.dim() != 2:
        raise ValueError(f"{op}: pos must be an (N, D) tensor, got "
                         f"{tuple(pos.shape) if isinstance(pos, torch.Tensor) else type(pos).__name__}")
    N = pos.shape[0]
    check_tensor(op, "pos", pos, (N, D))
    if skip is not None:
        check_tensor(op, "skip", skip, (B, N, D))
    if N > L:
        raise ValueError(f"{op}: pos has {N} tokens, more than refined's {L}")
    same_device(op, refined=refined, skip=skip, pos=pos)


def fine_entry_dtype(refined, skip, pos):
    dtype = torch.promote_types(refined.dtype, pos.dtype)
    return dtype if skip is None else torch.promote_types(dtype, skip.dtype)


def fine_entry_fwd(refined, skip, pos):
    check_fine_entry(refined, skip, pos)
    require_triton("fine_entry", refined)
    B, L, D = refined.shape
    M = L - pos.shape[0]
    block, warps = row_block("fine_entry", D)
    out = torch.empty((B, L, D), device=refined.device, dtype=fine_entry_dtype(refined, skip, pos))
    skip_arg = skip.contiguous() if skip is not None else pos
    _fine_entry_kernel[(B, triton.cdiv(L, ROWS_PER_PROGRAM))](
        refined.contiguous(), skip_arg, pos.contiguous(), out, L, D, M,
        HAS_SKIP=skip is not None, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return out


# --------------------------------------------------------------------------- registration
@torch.library.custom_op("mpdit::upsample_shuffle_norm", mutates_args=())
def _upsample_op(wide: torch.Tensor, cls: torch.Tensor, ratio: int, grid_h: int,
                 grid_w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return upsample_fwd(wide, cls, ratio, grid_h, grid_w)


@_upsample_op.register_fake
def _(wide, cls, ratio, grid_h, grid_w):
    B, M, D = cls.shape
    L = M + ratio * ratio * grid_h * grid_w
    stats = wide.new_empty((B, L), dtype=torch.float32)
    return wide.new_empty((B, L, D), dtype=torch.promote_types(wide.dtype, cls.dtype)), stats, torch.empty_like(stats)


@torch.library.custom_op("mpdit::upsample_shuffle_norm_backward", mutates_args=())
def _upsample_bwd_op(wide: torch.Tensor, cls: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                     dout: torch.Tensor, ratio: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return upsample_bwd(wide, cls, mean, rstd, dout, ratio, grid_w)


@_upsample_bwd_op.register_fake
def _(wide, cls, mean, rstd, dout, ratio, grid_w):
    return wide.new_empty(wide.shape), cls.new_empty(cls.shape)


def _upsample_setup(ctx, inputs, output):
    wide, cls, ratio, grid_h, grid_w = inputs
    ctx.ratio, ctx.grid_w = ratio, grid_w
    ctx.save_for_backward(wide, cls, output[1], output[2])


def _upsample_backward(ctx, dout, dmean, drstd):
    wide, cls, mean, rstd = ctx.saved_tensors
    dwide, dcls = _upsample_bwd_op(wide, cls, mean, rstd, dout, ctx.ratio, ctx.grid_w)
    return dwide, dcls, None, None, None


_upsample_op.register_autograd(_upsample_backward, setup_context=_upsample_setup)


@torch.library.custom_op("mpdit::fine_entry", mutates_args=())
def _fine_entry_op(refined: torch.Tensor, skip: Optional[torch.Tensor], pos: torch.Tensor) -> torch.Tensor:
    return fine_entry_fwd(refined, skip, pos)


@_fine_entry_op.register_fake
def _(refined, skip, pos):
    return refined.new_empty(refined.shape, dtype=fine_entry_dtype(refined, skip, pos))


def _fine_entry_setup(ctx, inputs, output):
    refined, skip, pos = inputs
    ctx.image_tokens, ctx.has_skip = pos.shape[0], skip is not None
    ctx.dtypes = (refined.dtype, skip.dtype if skip is not None else None, pos.dtype)


def _fine_entry_backward(ctx, dout):
    # The gradient only routes: refined gets all of it, skip and pos the image rows.
    # No kernel: these are views and one reduction (pos is frozen in the models).
    refined_dtype, skip_dtype, pos_dtype = ctx.dtypes
    image = dout[:, dout.shape[1] - ctx.image_tokens:]
    dskip = image.to(skip_dtype) if ctx.has_skip else None
    dpos = image.sum(0).to(pos_dtype) if ctx.needs_input_grad[2] else None
    return dout.to(refined_dtype), dskip, dpos


_fine_entry_op.register_autograd(_fine_entry_backward, setup_context=_fine_entry_setup)


def upsample_shuffle_norm(wide, cls, ratio: int, grid_h: int, grid_w: int):
    """LayerNorm(cat(cls, GELU(pixel_shuffle(wide)))), fused; wide (B, h*w, r*r*D), cls (B, m, D) -> (B, m + r*r*h*w, D)."""
    return _upsample_op(wide, cls, ratio, grid_h, grid_w)[0]


def fine_entry(refined, skip, pos):
    """refined with skip + pos added to its last N (image) tokens, fused.

    refined (B, m + N, D); skip (B, N, D) or None (the no-skip ablation); pos (N, D).
    """
    return _fine_entry_op(refined, skip, pos)


# --------------------------------------------------------------------------- reference
def upsample_shuffle_norm_ref(wide, cls, ratio: int, grid_h: int, grid_w: int):
    B, tokens, channels = wide.shape
    image = wide.transpose(1, 2).reshape(B, channels, grid_h, grid_w)
    image = torch.nn.functional.pixel_shuffle(image, ratio).flatten(2).transpose(1, 2)  # (B, r*r*h*w, D)
    image = torch.nn.functional.gelu(image, approximate="tanh")
    tokens = torch.cat([cls, image], dim=1)
    return torch.nn.functional.layer_norm(tokens, tokens.shape[-1:], eps=EPS)


def fine_entry_ref(refined, skip, pos):
    m = refined.shape[1] - pos.shape[0]
    image = refined[:, m:] + pos if skip is None else refined[:, m:] + skip + pos
    return torch.cat([refined[:, :m], image], dim=1)
