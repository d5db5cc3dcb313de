"""Triton kernels for the fused residual + AdaLN modulation (contract: mpdit_kernels/ops/adaln.py).

One pass reads x and y and writes x_out = x + gate * y and h = LayerNorm(x_out) *
(1 + scale) + shift; eager PyTorch needs five passes over the activations. The backward
derivation below is the one the C++/CUDA implementation (csrc/adaln*.c*) follows too.
"""
import torch

from mpdit_kernels.checks import promoted
from mpdit_kernels.triton.runtime import row_block, row_contiguous, tl, triton

ROWS_PER_PROGRAM = 16


# --------------------------------------------------------------------------- kernels
@triton.jit
def _adaln_fwd_kernel(
    x_ptr,  # (B, L, D) residual stream, strides (stride_xb, stride_xl, 1): a token slice is read in place
    y_ptr,  # (B, L, D) branch output, strides (stride_yb, stride_yl, 1); unused without residual
    gate_ptr,  # (B, D) contiguous; unused without residual
    shift_ptr,  # (B, D) contiguous
    scale_ptr,  # (B, D) contiguous
    xout_ptr,  # (B, L, D) contiguous: x + gate * y; unused without residual
    h_ptr,  # (B, L, D) contiguous: modulated LayerNorm
    mean_ptr,  # (B, L) float32
    rstd_ptr,  # (B, L) float32
    L, D, stride_xb, stride_xl, stride_yb, stride_yl, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
):
    b = tl.program_id(0)
    first_row = tl.program_id(1) * ROWS
    cols = tl.arange(0, BLOCK_D)
    col_mask = cols < D
    shift = tl.load(shift_ptr + b * D + cols, mask=col_mask, other=0.0).to(tl.float32)
    scale = tl.load(scale_ptr + b * D + cols, mask=col_mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(gate_ptr + b * D + cols, mask=col_mask, other=0.0).to(tl.float32)
    for i in range(ROWS):
        row = first_row + i
        mask = cols < tl.where(row < L, D, 0)  # (col_mask & row < L trips the interpreter)
        x = tl.load(x_ptr + b * stride_xb + row * stride_xl + cols, mask=mask, other=0.0).to(tl.float32)
        out_offsets = (b * L + row) * D + cols
        if HAS_RESIDUAL:
            y = tl.load(y_ptr + b * stride_yb + row * stride_yl + cols, mask=mask, other=0.0).to(tl.float32)
            x = x + gate * y
            tl.store(xout_ptr + out_offsets, x.to(xout_ptr.dtype.element_ty), mask=mask)
        mean = tl.sum(x, axis=0) / D
        centred = tl.where(col_mask, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / D + eps)
        h = centred * rstd * (1.0 + scale) + shift
        tl.store(h_ptr + out_offsets, h.to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(mean_ptr + b * L + row, mean, mask=row < L)
        tl.store(rstd_ptr + b * L + row, rstd, mask=row < L)


# Backward, per row, with n = (r - mean) * rstd the normalised residual r = x + gate * y:
#   dshift += dh;  dscale += dh * n;  dn = dh * (1 + scale)
#   dr = rstd * (dn - mean(dn) - n * mean(dn * n)) + dx_out          (LayerNorm backward)
#   dx = dr;  dy = dr * gate;  dgate += dr * y
# The per-sample sums run over this program's rows in fp32; the host adds the partials.
@triton.jit
def _adaln_bwd_kernel(
    x_ptr,  # (B, L, D) input residual stream, strides (stride_xb, stride_xl, 1)
    y_ptr,  # (B, L, D) branch output, strides (stride_yb, stride_yl, 1); unused without residual
    gate_ptr,  # (B, D); unused without residual
    scale_ptr,  # (B, D)
    mean_ptr,  # (B, L) float32, from the forward
    rstd_ptr,  # (B, L) float32, from the forward
    dxout_ptr,  # (B, L, D) contiguous gradient of x_out; unused without residual
    dh_ptr,  # (B, L, D) contiguous gradient of h
    dx_ptr,  # (B, L, D) contiguous
    dy_ptr,  # (B, L, D) contiguous; unused without residual
    dgate_part_ptr,  # (B, P, D) float32 partial sums, P = programs along L
    dshift_part_ptr,  # (B, P, D) float32
    dscale_part_ptr,  # (B, P, D) float32
    L, D, P, stride_xb, stride_xl, stride_yb, stride_yl,
    HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr,
):
    b = tl.program_id(0)
    p = tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)
    col_mask = cols < D
    scale = tl.load(scale_ptr + b * D + cols, mask=col_mask, other=0.0).to(tl.float32)
    dshift = tl.zeros([BLOCK_D], dtype=tl.float32)
    dscale = tl.zeros([BLOCK_D], dtype=tl.float32)
    dgate = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(gate_ptr + b * D + cols, mask=col_mask, other=0.0).to(tl.float32)
    for i in range(ROWS):
        row = p * ROWS + i
        mask = cols < tl.where(row < L, D, 0)  # (col_mask & row < L trips the interpreter)
        r = tl.load(x_ptr + b * stride_xb + row * stride_xl + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            y = tl.load(y_ptr + b * stride_yb + row * stride_yl + cols, mask=mask, other=0.0).to(tl.float32)
            r = r + gate * y
        mean = tl.load(mean_ptr + b * L + row, mask=row < L, other=0.0)
        rstd = tl.load(rstd_ptr + b * L + row, mask=row < L, other=0.0)
        offsets = (b * L + row) * D + cols
        dh = tl.load(dh_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        n = tl.where(mask, (r - mean) * rstd, 0.0)
        dshift += dh
        dscale += dh * n
        dn = dh * (1.0 + scale)
        dr = rstd * (dn - tl.sum(dn, axis=0) / D - n * (tl.sum(dn * n, axis=0) / D))
        if HAS_RESIDUAL:
            dr += tl.load(dxout_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            dgate += dr * y
            tl.store(dy_ptr + offsets, (dr * gate).to(dy_ptr.dtype.element_ty), mask=mask)
        tl.store(dx_ptr + offsets, dr.to(dx_ptr.dtype.element_ty), mask=mask)
    part = (b * P + p) * D + cols
    tl.store(dshift_part_ptr + part, dshift, mask=col_mask)
    tl.store(dscale_part_ptr + part, dscale, mask=col_mask)
    if HAS_RESIDUAL:
        tl.store(dgate_part_ptr + part, dgate, mask=col_mask)


# --------------------------------------------------------------------------- launchers
def adaln_fwd(x, y, gate, shift, scale, eps):
    """Launch the forward; y / gate None = plain variant. Returns (x_out or None, h, mean, rstd)."""
    B, L, D = x.shape
    block, warps = row_block("adaln_modulate", D)
    x, y = row_contiguous(x), row_contiguous(y)
    h = torch.empty((B, L, D), device=x.device, dtype=promoted(x, y, gate, shift, scale))
    x_out = torch.empty((B, L, D), device=x.device, dtype=promoted(x, y, gate)) if y is not None else h
    mean = torch.empty((B, L), device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    gate, shift, scale = (v.contiguous() if v is not None else None for v in (gate, shift, scale))
    y_arg = y if y is not None else x
    grid = (B, triton.cdiv(L, ROWS_PER_PROGRAM))
    _adaln_fwd_kernel[grid](
        x, y_arg, gate if gate is not None else shift, shift, scale, x_out, h, mean, rstd,
        L, D, x.stride(0), x.stride(1), y_arg.stride(0), y_arg.stride(1), eps,
        HAS_RESIDUAL=y is not None, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    return (x_out if y is not None else None), h, mean, rstd


def adaln_bwd(x, y, gate, scale, mean, rstd, dx_out, dh):
    """Launch the backward. Returns (dx, dy, dgate, dshift, dscale); dy, dgate None without residual."""
    B, L, D = x.shape
    has_residual = y is not None
    x, y = row_contiguous(x), row_contiguous(y)
    block, warps = row_block("adaln_modulate backward", D)
    P = triton.cdiv(L, ROWS_PER_PROGRAM)
    dh = dh.contiguous()  # gradients can arrive as expanded, stride-0 views
    dx_out = dx_out.contiguous() if has_residual else dh
    dx = torch.empty((B, L, D), device=x.device, dtype=x.dtype)
    dy = torch.empty((B, L, D), device=x.device, dtype=y.dtype) if has_residual else dx
    parts = torch.empty((3, B, P, D), device=x.device, dtype=torch.float32)
    gate = gate.contiguous() if has_residual else scale
    y_arg = y if has_residual else x
    _adaln_bwd_kernel[(B, P)](
        x, y_arg, gate, scale.contiguous(), mean, rstd, dx_out, dh, dx, dy, parts[0], parts[1], parts[2],
        L, D, P, x.stride(0), x.stride(1), y_arg.stride(0), y_arg.stride(1),
        HAS_RESIDUAL=has_residual, BLOCK_D=block, ROWS=ROWS_PER_PROGRAM, num_warps=warps)
    # separate tensors (custom-op outputs may not alias), summed in fp32 and cast once
    dgate, dshift, dscale = (part.sum(dim=1).to(v.dtype) for part, v in zip(parts, (gate, scale, scale)))
    if not has_residual:
        return dx, None, None, dshift, dscale
    return dx, dy, dgate, dshift, dscale
