"""Triton kernels for MPDiT's stage transition (contracts: mpdit_kernels/ops/upsample.py).

upsample_shuffle_norm: pixel shuffle of the expand GEMM's output, GELU (tanh), class
    tokens in front, LayerNorm over every token: one kernel.
fine_entry: refine output + skip projection + position table on the image tokens: one
    pass instead of three. The backward derivation below is the one csrc/upsample*.c*
    follows too.
"""
import torch

from mpdit_kernels.checks import promoted
from mpdit_kernels.triton.runtime import row_block, row_width, tl, triton

ROWS_PER_PROGRAM = 16


# --------------------------------------------------------------------------- kernels
# A program owns one coarse image token and writes the R*R fine rows it becomes: its R*R*D
# channels are contiguous in `wide`, so they load as one coalesced (D, R*R) tile with 128-bit
# loads (one fine row at a time read every R*R-th channel with 2-byte loads: 19-31% of copy
# bandwidth on the H200). The programs after the image tokens each own one class token.
@triton.jit
def _fine_rows(token, k, W, R: tl.constexpr):
    """The fine image rows (counted after the class tokens) that coarse token `token`'s
    sub-positions k = i * R + j land on: F.pixel_shuffle puts channel d * R * R + k of coarse
    cell (y, x) at fine cell (R * y + i, R * x + j)."""
    return ((token // W) * R + k // R) * (W * R) + (token % W) * R + k % R


@triton.jit
def _image_tile(wide_ptr, b, token, hw, D, R: tl.constexpr, RR_BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
    """Coarse token `token`'s channels as a (BLOCK_D, RR_BLOCK) tile [d, k] = wide[b, token, d * R * R + k] in
    fp32, with its offsets and mask, GELU(u), its sigmoid, and the column indices d and k."""
    d = tl.arange(0, BLOCK_D)[:, None]
    k = tl.arange(0, RR_BLOCK)[None, :]
    mask = (d < D) & (k < R * R)
    offsets = (b * hw + token) * (D * R * R) + d * (R * R) + k
    if R * R == RR_BLOCK:  # one contiguous run: loaded flat, 128-bit loads (as a 2-D tile: 64-bit)
        flat = tl.arange(0, BLOCK_D * RR_BLOCK)
        u = tl.load(wide_ptr + (b * hw + token) * (D * R * R) + flat, mask=flat < D * R * R, other=0.0)
        u = tl.reshape(u, (BLOCK_D, RR_BLOCK)).to(tl.float32)
    else:
        u = tl.load(wide_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(2.0 * 0.7978845608028654 * (u + 0.044715 * u * u * u))  # 0.5 (1 + tanh z) = sigmoid(2z)
    return u, u * sig, sig, offsets, mask, d, k


@triton.jit
def _class_row_fwd(cls_ptr, out_ptr, mean_ptr, rstd_ptr, b, row, L, D, M, eps, BLOCK_D: tl.constexpr):
    """Class token `row`, normalised as it is."""
    cols = tl.arange(0, BLOCK_D)
    live = cols < D
    c = tl.load(cls_ptr + (b * M + row) * D + cols, mask=live, other=0.0).to(tl.float32)
    mean = tl.sum(c, axis=0) / D
    centred = tl.where(live, c - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / D + eps)
    tl.store(out_ptr + (b * L + row) * D + cols, (centred * rstd).to(out_ptr.dtype.element_ty), mask=live)
    tl.store(mean_ptr + b * L + row, mean)
    tl.store(rstd_ptr + b * L + row, rstd)


@triton.jit
def _image_rows_fwd(wide_ptr, out_ptr, mean_ptr, rstd_ptr, b, token, hw, L, D, M, W, eps, R: tl.constexpr,
                    RR_BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
    """Coarse token `token`'s R*R fine rows, each normalised over its D channels (axis 0 of the tile)."""
    u, v, sig, offsets, mask, d, k = _image_tile(wide_ptr, b, token, hw, D, R, RR_BLOCK, BLOCK_D)
    mean = tl.sum(v, axis=0) / D  # (RR_BLOCK,)
    centred = tl.where(mask, v - mean[None, :], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / D + eps)
    rows = M + _fine_rows(token, k, W, R)  # (1, RR_BLOCK)
    normed = centred * rstd[None, :]
    tl.store(out_ptr + (b * L + rows) * D + d, normed.to(out_ptr.dtype.element_ty), mask=mask)
    sub = tl.arange(0, RR_BLOCK)
    stat_rows = b * L + M + _fine_rows(token, sub, W, R)
    tl.store(mean_ptr + stat_rows, mean, mask=sub < R * R)
    tl.store(rstd_ptr + stat_rows, rstd, mask=sub < R * R)


@triton.jit
def _upsample_fwd_kernel(
    wide_ptr,  # (B, h*w, R*R*D) contiguous: the expand projection
    cls_ptr,  # (B, M, D) contiguous: class tokens
    out_ptr,  # (B, L, D) contiguous, L = M + R*R*h*w
    mean_ptr,  # (B, L) float32
    rstd_ptr,  # (B, L) float32
    L, D, M, W, eps,
    R: tl.constexpr, RR_BLOCK: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    token = tl.program_id(1)  # the h*w coarse image tokens, then the M class tokens
    hw = (L - M) // (R * R)
    if token < hw:
        _image_rows_fwd(wide_ptr, out_ptr, mean_ptr, rstd_ptr, b, token, hw, L, D, M, W, eps, R, RR_BLOCK, BLOCK_D)
    else:
        _class_row_fwd(cls_ptr, out_ptr, mean_ptr, rstd_ptr, b, token - hw, L, D, M, eps, BLOCK_D)


# Backward, per fine row, with n the normalised row and v = GELU(u) (or the class token):
#   dv = rstd * (dout - mean(dout) - n * mean(dout * n))               (LayerNorm, no affine)
#   class rows: dcls = dv;  image rows: du = dv * GELU'(u), written in wide's layout,
#   GELU'(u) = s + u * s * (1 - s) * 2 c (1 + 3 * 0.044715 u^2), s = sigmoid(2 c (u + 0.044715 u^3)).
# A program writes its coarse token's whole (D, R*R) gradient tile: no atomics, 128-bit stores.
@triton.jit
def _class_row_bwd(cls_ptr, mean_ptr, rstd_ptr, dout_ptr, dcls_ptr, b, row, L, D, M, BLOCK_D: tl.constexpr):
    cols = tl.arange(0, BLOCK_D)
    live = cols < D
    c = tl.load(cls_ptr + (b * M + row) * D + cols, mask=live, other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + b * L + row)
    rstd = tl.load(rstd_ptr + b * L + row)
    n = tl.where(live, (c - mean) * rstd, 0.0)
    dout = tl.load(dout_ptr + (b * L + row) * D + cols, mask=live, other=0.0).to(tl.float32)
    dv = rstd * (dout - tl.sum(dout, axis=0) / D - n * (tl.sum(dout * n, axis=0) / D))
    tl.store(dcls_ptr + (b * M + row) * D + cols, dv.to(dcls_ptr.dtype.element_ty), mask=live)


@triton.jit
def _image_rows_bwd(wide_ptr, mean_ptr, rstd_ptr, dout_ptr, dwide_ptr, b, token, hw, L, D, M, W, R: tl.constexpr,
                    RR_BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
    u, v, sig, offsets, mask, d, k = _image_tile(wide_ptr, b, token, hw, D, R, RR_BLOCK, BLOCK_D)
    sub = tl.arange(0, RR_BLOCK)
    stat_rows = b * L + M + _fine_rows(token, sub, W, R)
    mean = tl.load(mean_ptr + stat_rows, mask=sub < R * R, other=0.0)[None, :]
    rstd = tl.load(rstd_ptr + stat_rows, mask=sub < R * R, other=0.0)[None, :]
    n = tl.where(mask, (v - mean) * rstd, 0.0)
    rows = M + _fine_rows(token, k, W, R)
    dout = tl.load(dout_ptr + (b * L + rows) * D + d, mask=mask, other=0.0).to(tl.float32)
    dv = rstd * (dout - (tl.sum(dout, axis=0) / D)[None, :] - n * (tl.sum(dout * n, axis=0) / D)[None, :])
    dgelu = sig + u * sig * (1.0 - sig) * 2.0 * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * u * u)
    du = (dv * dgelu).to(dwide_ptr.dtype.element_ty)
    if R * R == RR_BLOCK:  # written flat, as the tile was read
        flat = tl.arange(0, BLOCK_D * RR_BLOCK)
        du_flat = tl.reshape(du, (BLOCK_D * RR_BLOCK,))
        tl.store(dwide_ptr + (b * hw + token) * (D * R * R) + flat, du_flat, mask=flat < D * R * R)
    else:
        tl.store(dwide_ptr + offsets, du, mask=mask)


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
    R: tl.constexpr, RR_BLOCK: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    token = tl.program_id(1)  # the h*w coarse image tokens, then the M class tokens
    hw = (L - M) // (R * R)
    if token < hw:
        _image_rows_bwd(wide_ptr, mean_ptr, rstd_ptr, dout_ptr, dwide_ptr, b, token, hw, L, D, M, W, R, RR_BLOCK,
                        BLOCK_D)
    else:
        _class_row_bwd(cls_ptr, mean_ptr, rstd_ptr, dout_ptr, dcls_ptr, b, token - hw, L, D, M, BLOCK_D)


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
def _tile(op: str, D: int, ratio: int) -> tuple:
    """(BLOCK_D, RR_BLOCK, num_warps) for one coarse token's (D, ratio^2) tile. Ratio 2 (every
    registered model) compiles for sm_90 without spills up to D = 4096; ratio 4 at D = 1152
    spills in the backward (correct, slower)."""
    block = row_width(op, D)
    rr_block = triton.next_power_of_2(ratio * ratio)
    return block, rr_block, min(max(block * rr_block // 512, 1), 16)


def upsample_fwd(wide, cls, ratio, grid_h, grid_w, eps):
    """Launch the forward. Returns (out, mean, rstd)."""
    B, M, D = cls.shape
    L = M + ratio * ratio * grid_h * grid_w
    block, rr_block, warps = _tile("upsample_shuffle_norm", D, ratio)
    out = torch.empty((B, L, D), device=wide.device, dtype=promoted(wide, cls))
    mean = torch.empty((B, L), device=wide.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    _upsample_fwd_kernel[(B, grid_h * grid_w + M)](
        wide.contiguous(), cls.contiguous(), out, mean, rstd, L, D, M, grid_w, eps,
        R=ratio, RR_BLOCK=rr_block, BLOCK_D=block, num_warps=warps)
    return out, mean, rstd


def upsample_bwd(wide, cls, mean, rstd, dout, ratio, grid_w):
    """Launch the backward. Returns (dwide, dcls)."""
    B, L = mean.shape
    M, D = cls.shape[1], cls.shape[2]
    block, rr_block, warps = _tile("upsample_shuffle_norm backward", D, ratio)
    dwide = torch.empty(wide.shape, device=wide.device, dtype=wide.dtype)
    dcls = torch.empty(cls.shape, device=cls.device, dtype=cls.dtype)
    _upsample_bwd_kernel[(B, wide.shape[1] + M)](
        wide.contiguous(), cls.contiguous(), mean, rstd, dout.contiguous(), dwide, dcls, L, D, M, grid_w,
        R=ratio, RR_BLOCK=rr_block, BLOCK_D=block, num_warps=warps)
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
