"""Triton kernels for the fused residual + AdaLN modulation (contract: mpdit_kernels/ops/adaln.py).

One pass reads x and y and writes x_out = x + gate * y and h = LayerNorm(x_out) *
(1 + scale) + shift; eager PyTorch needs five passes over the activations. The backward
derivation below is the one the C++/CUDA implementation (csrc/adaln*.c*) follows too.
"""
import torch

from mpdit_kernels.checks import promoted
from mpdit_kernels.triton.runtime import autotune, row_contiguous, row_width, tl, triton

# A program owns ROWS rows of one sample and works on TILE of them at once (TILE rows in
# flight hide the latency of the two row reductions; one row per step left the coarse
# 80-token shape at 15-34% of copy bandwidth). The GPU times these once per (L, D).
FORWARD_CONFIGS = [triton.Config({"ROWS": rows, "TILE": tile}, num_warps=warps)
                   for rows, tile, warps in ((16, 1, 8), (16, 2, 8), (8, 4, 8), (4, 4, 8), (4, 2, 4), (8, 4, 16))]
# The backward's per-sample partial sums are laid out by ROWS, so it stays fixed there.
BACKWARD_ROWS = 16
BACKWARD_CONFIGS = [triton.Config({"TILE": tile}, num_warps=warps)
                    for tile, warps in ((1, 8), (1, 4), (1, 16), (2, 8), (2, 16), (4, 16))]


# --------------------------------------------------------------------------- kernels
@autotune(FORWARD_CONFIGS, key=["L", "D"])
@triton.jit
def _adaln_fwd_kernel(
    x_ptr,  # (B, L, D) residual stream, strides (stride_xb, stride_xl, 1): a token slice is read in place
    y_ptr,  # (B, L, D) branch output, strides (stride_yb, stride_yl, 1); unused without residual
    gate_ptr,  # (B, D), strides (stride_gb, 1); unused without residual
    shift_ptr,  # (B, D), strides (stride_sb, 1): a slice of the (B, 6, D) modulation is read in place
    scale_ptr,  # (B, D), strides (stride_cb, 1)
    xout_ptr,  # (B, L, D) contiguous: x + gate * y; unused without residual
    h_ptr,  # (B, L, D) contiguous: modulated LayerNorm
    mean_ptr,  # (B, L) float32
    rstd_ptr,  # (B, L) float32
    L, D, stride_xb, stride_xl, stride_yb, stride_yl, stride_gb, stride_sb, stride_cb, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr, TILE: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)[None, :]  # (1, BLOCK_D)
    col_mask = cols < D
    shift = tl.load(shift_ptr + b * stride_sb + cols, mask=col_mask, other=0.0).to(tl.float32)
    scale = tl.load(scale_ptr + b * stride_cb + cols, mask=col_mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(gate_ptr + b * stride_gb + cols, mask=col_mask, other=0.0).to(tl.float32)
    for start in range(0, ROWS, TILE):
        rows = tl.program_id(1) * ROWS + start + tl.arange(0, TILE)  # (TILE,)
        live = rows < L
        mask = col_mask & live[:, None]  # (TILE, BLOCK_D)
        x = tl.load(x_ptr + b * stride_xb + rows[:, None] * stride_xl + cols, mask=mask, other=0.0).to(tl.float32)
        out_offsets = (b * L + rows[:, None]) * D + cols
        if HAS_RESIDUAL:
            y = tl.load(y_ptr + b * stride_yb + rows[:, None] * stride_yl + cols, mask=mask, other=0.0)
            x = x + gate * y.to(tl.float32)
            tl.store(xout_ptr + out_offsets, x.to(xout_ptr.dtype.element_ty), mask=mask)
        mean = tl.sum(x, axis=1) / D  # (TILE,)
        centred = tl.where(mask, x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / D + eps)
        h = centred * rstd[:, None] * (1.0 + scale) + shift
        tl.store(h_ptr + out_offsets, h.to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(mean_ptr + b * L + rows, mean, mask=live)
        tl.store(rstd_ptr + b * L + rows, rstd, mask=live)


# Backward, per row, with n = (r - mean) * rstd the normalised residual r = x + gate * y:
#   dshift += dh;  dscale += dh * n;  dn = dh * (1 + scale)
#   dr = rstd * (dn - mean(dn) - n * mean(dn * n)) + dx_out          (LayerNorm backward)
#   dx = dr;  dy = dr * gate;  dgate += dr * y
# The per-sample sums run over this program's rows in fp32; the host adds the partials.
@autotune(BACKWARD_CONFIGS, key=["L", "D"])
@triton.jit
def _adaln_bwd_kernel(
    x_ptr,  # (B, L, D) input residual stream, strides (stride_xb, stride_xl, 1)
    y_ptr,  # (B, L, D) branch output, strides (stride_yb, stride_yl, 1); unused without residual
    gate_ptr,  # (B, D), strides (stride_gb, 1); unused without residual
    scale_ptr,  # (B, D), strides (stride_cb, 1)
    mean_ptr,  # (B, L) float32, from the forward
    rstd_ptr,  # (B, L) float32, from the forward
    dxout_ptr,  # (B, L, D) contiguous gradient of x_out; unused without residual
    dh_ptr,  # (B, L, D) contiguous gradient of h
    dx_ptr,  # (B, L, D) contiguous
    dy_ptr,  # (B, L, D) contiguous; unused without residual
    dgate_part_ptr,  # (B, P, D) float32 partial sums, P = programs along L
    dshift_part_ptr,  # (B, P, D) float32
    dscale_part_ptr,  # (B, P, D) float32
    L, D, P, stride_xb, stride_xl, stride_yb, stride_yl, stride_gb, stride_cb,
    HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr, TILE: tl.constexpr,
):
    b = tl.program_id(0)
    p = tl.program_id(1)
    cols = tl.arange(0, BLOCK_D)[None, :]  # (1, BLOCK_D)
    col_mask = cols < D
    scale = tl.load(scale_ptr + b * stride_cb + cols, mask=col_mask, other=0.0).to(tl.float32)
    dshift = tl.zeros([BLOCK_D], dtype=tl.float32)
    dscale = tl.zeros([BLOCK_D], dtype=tl.float32)
    dgate = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(gate_ptr + b * stride_gb + cols, mask=col_mask, other=0.0).to(tl.float32)
    for start in range(0, ROWS, TILE):
        rows = p * ROWS + start + tl.arange(0, TILE)  # (TILE,)
        live = rows < L
        mask = col_mask & live[:, None]  # (TILE, BLOCK_D)
        r = tl.load(x_ptr + b * stride_xb + rows[:, None] * stride_xl + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            y = tl.load(y_ptr + b * stride_yb + rows[:, None] * stride_yl + cols, mask=mask, other=0.0).to(tl.float32)
            r = r + gate * y
        mean = tl.load(mean_ptr + b * L + rows, mask=live, other=0.0)[:, None]
        rstd = tl.load(rstd_ptr + b * L + rows, mask=live, other=0.0)[:, None]
        offsets = (b * L + rows[:, None]) * D + cols
        dh = tl.load(dh_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        n = tl.where(mask, (r - mean) * rstd, 0.0)
        dshift += tl.sum(dh, axis=0)
        dscale += tl.sum(dh * n, axis=0)
        dn = dh * (1.0 + scale)
        dr = rstd * (dn - tl.sum(dn, axis=1)[:, None] / D - n * (tl.sum(dn * n, axis=1)[:, None] / D))
        if HAS_RESIDUAL:
            dr += tl.load(dxout_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            dgate += tl.sum(dr * y, axis=0)
            tl.store(dy_ptr + offsets, (dr * gate).to(dy_ptr.dtype.element_ty), mask=mask)
        tl.store(dx_ptr + offsets, dr.to(dx_ptr.dtype.element_ty), mask=mask)
    part = (b * P + p) * D + tl.arange(0, BLOCK_D)
    part_mask = tl.arange(0, BLOCK_D) < D
    tl.store(dshift_part_ptr + part, dshift, mask=part_mask)
    tl.store(dscale_part_ptr + part, dscale, mask=part_mask)
    if HAS_RESIDUAL:
        tl.store(dgate_part_ptr + part, dgate, mask=part_mask)


# --------------------------------------------------------------------------- launchers
def adaln_fwd(x, y, gate, shift, scale, eps, h_dtype):
    """Launch the forward; y / gate None = plain variant. Returns (x_out or None, h, mean, rstd)."""
    B, L, D = x.shape
    block = row_width("adaln_modulate", D)
    x, y = row_contiguous(x), row_contiguous(y)
    h = torch.empty((B, L, D), device=x.device, dtype=h_dtype)
    x_out = torch.empty((B, L, D), device=x.device, dtype=promoted(x, y, gate)) if y is not None else h
    mean = torch.empty((B, L), device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    gate, shift, scale = (row_contiguous(v) for v in (gate, shift, scale))  # (B, 6, D) slices: no copy
    y_arg = y if y is not None else x
    gate_arg = gate if gate is not None else shift
    _adaln_fwd_kernel[lambda meta: (B, triton.cdiv(L, meta["ROWS"]))](
        x, y_arg, gate_arg, shift, scale, x_out, h, mean, rstd,
        L, D, x.stride(0), x.stride(1), y_arg.stride(0), y_arg.stride(1), gate_arg.stride(0), shift.stride(0),
        scale.stride(0), eps, HAS_RESIDUAL=y is not None, BLOCK_D=block)
    return (x_out if y is not None else None), h, mean, rstd


def adaln_bwd(x, y, gate, scale, mean, rstd, dx_out, dh):
    """Launch the backward. Returns (dx, dy, dgate, dshift, dscale); dy, dgate None without residual."""
    B, L, D = x.shape
    has_residual = y is not None
    x, y = row_contiguous(x), row_contiguous(y)
    block = row_width("adaln_modulate backward", D)
    P = triton.cdiv(L, BACKWARD_ROWS)
    dh = dh.contiguous()  # gradients can arrive as expanded, stride-0 views
    dx_out = dx_out.contiguous() if has_residual else dh
    dx = torch.empty((B, L, D), device=x.device, dtype=x.dtype)
    dy = torch.empty((B, L, D), device=x.device, dtype=y.dtype) if has_residual else dx
    parts = torch.empty((3, B, P, D), device=x.device, dtype=torch.float32)
    scale = row_contiguous(scale)
    gate = row_contiguous(gate) if has_residual else scale
    y_arg = y if has_residual else x
    _adaln_bwd_kernel[(B, P)](
        x, y_arg, gate, scale, mean, rstd, dx_out, dh, dx, dy, parts[0], parts[1], parts[2],
        L, D, P, x.stride(0), x.stride(1), y_arg.stride(0), y_arg.stride(1), gate.stride(0), scale.stride(0),
        HAS_RESIDUAL=has_residual, BLOCK_D=block, ROWS=BACKWARD_ROWS)
    # separate tensors (custom-op outputs may not alias), summed in fp32 and cast once
    dgate, dshift, dscale = (part.sum(dim=1).to(v.dtype) for part, v in zip(parts, (gate, scale, scale)))
    if not has_residual:
        return dx, None, None, dshift, dscale
    return dx, dy, dgate, dshift, dscale
