"""Triton kernels for MPDiT's stage transition (contracts: mpdit_kernels/ops/upsample.py).

upsample_shuffle_norm: pixel shuffle of the expand GEMM's output, GELU (tanh), class
    tokens in front, LayerNorm over every token: one kernel.
fine_entry: refine output + skip projection + position table on the image tokens: one
    pass instead of three. The backward derivation below is the one csrc/upsample*.c*
    follows too.
"""
import torch

from mpdit_kernels.checks import promoted
from mpdit_kernels.triton.runtime import row_block, tl, triton

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
def upsample_fwd(wide, cls, ratio, grid_h, grid_w, eps):
    """Launch the forward. Returns (out, mean, rstd)."""
    B, M, D = cls.shape
    L = M + ratio * ratio * grid_h * grid_w
    block, warps = row_block("upsample_shuffle_norm", D)
    out = torch.empty((B, L, D), device=wide.device, dtype=promoted(wide, cls))
    mean = torch.empty((B, L), device=wide.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    _upsample_fwd_kernel[(B, triton.cdiv(L, ROWS_PER_PROGRAM))](
        wide.contiguous(), cls.contiguous(), out, mean, rstd, L, D, M, grid_w, eps,
        R=ratio, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return out, mean, rstd


def upsample_bwd(wide, cls, mean, rstd, dout, ratio, grid_w):
    """Launch the backward. Returns (dwide, dcls)."""
    B, L = mean.shape
    M, D = cls.shape[1], cls.shape[2]
    block, warps = row_block("upsample_shuffle_norm backward", D)
    dwide = torch.empty(wide.shape, device=wide.device, dtype=wide.dtype)
    dcls = torch.empty(cls.shape, device=cls.device, dtype=cls.dtype)
    _upsample_bwd_kernel[(B, triton.cdiv(L, ROWS_PER_PROGRAM))](
        wide.contiguous(), cls.contiguous(), mean, rstd, dout.contiguous(), dwide, dcls, L, D, M, grid_w,
        R=ratio, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return dwide, dcls


def fine_entry_fwd(refined, skip, pos):
    """Launch the forward; skip may be None. Returns the output."""
    B, L, D = refined.shape
    M = L - pos.shape[0]
    block, warps = row_block("fine_entry", D)
    out = torch.empty((B, L, D), device=refined.device, dtype=promoted(refined, skip, pos))
    skip_arg = skip.contiguous() if skip is not None else pos
    _fine_entry_kernel[(B, triton.cdiv(L, ROWS_PER_PROGRAM))](
        refined.contiguous(), skip_arg, pos.contiguous(), out, L, D, M,
        HAS_SKIP=skip is not None, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return out
