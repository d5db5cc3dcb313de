"""Shared by the kernel tests: the tolerance rule and the output-and-gradient check."""
import torch

# fp32: tight. Low precision: flash-attention's rule, the kernel's max error against an
# fp32 reference at most 2x the error of the same computation done by PyTorch in that
# dtype, plus a floor of one rounding on store (half an ulp of the largest output), which
# the kernel cannot avoid and PyTorch's error need not show on a few elements.
FP32_RELATIVE = 1e-5
LOW_PRECISION_FACTOR = 2.0
DTYPES = [torch.float32, torch.bfloat16]

# Deliberately awkward (B, L, D): head widths of S/B/XL, token counts off the 16-row program
# block (1, 17, 80 = 16 + 64, 272 = 16 + 256), batch 1 and 3. D = 1152 only at few tokens:
# the interpreter is slow and the per-row code is the same.
ADALN_SHAPES = [(1, 1, 72), (3, 17, 72), (1, 80, 384), (3, 272, 72), (3, 17, 1152)]
# (B, grid_h, grid_w, D, class tokens, ratio): MPDiT-S's real 8x8 -> 16x16 with 16 tokens
# (272 rows out), a non-square grid, no class tokens (the m = 0 ablation), XL's width, ratio 3
# (9 sub-positions: the Triton tile's padded path), ratio 4.
UPSAMPLE_CASES = [(1, 8, 8, 384, 16, 2), (3, 2, 3, 72, 16, 2), (3, 3, 2, 72, 0, 2), (1, 2, 2, 1152, 1, 2),
                  (2, 2, 3, 72, 2, 3), (1, 2, 2, 72, 3, 4)]
# (B, class tokens, image tokens, D)
FINE_CASES = [(1, 16, 64, 72), (3, 16, 17, 384), (3, 0, 1, 1152), (2, 1, 256, 72)]


def upsample_inputs(case, device):
    """(wide, cls) for an UPSAMPLE_CASES entry, fp32."""
    B, h, w, D, m, r = case
    return torch.randn(B, h * w, r * r * D, device=device), torch.randn(B, m, D, device=device)


def fine_entry_inputs(case, with_skip, device):
    """(refined, skip or None, pos) for a FINE_CASES entry, fp32."""
    B, m, N, D = case
    skip = torch.randn(B, N, D, device=device) if with_skip else None
    return torch.randn(B, m + N, D, device=device), skip, torch.randn(N, D, device=device)


def check_strided_rows_and_expanded_gradients(residual_fn, residual_ref, device):
    """A token slice (the final layer's image tokens) is read with its strides, and so are the
    (B, D) vectors sliced out of the (B, 6, D) modulation; a gradient from .sum() arrives as a
    stride-0 view, which a kernel must not read as contiguous memory."""
    full_x, full_y = (torch.randn(3, 20, 72, device=device, requires_grad=True) for _ in range(2))
    modulation = (0.5 * torch.randn(3, 6, 72, device=device)).requires_grad_()
    shift, scale, gate = modulation.unbind(1)[3:]
    x, y = full_x[:, 4:], full_y[:, 4:]
    assert not x.is_contiguous() and not gate.is_contiguous()
    x_out, h = residual_fn(x, y, gate, shift, scale)
    ref_out, ref_h = residual_ref(x, y, gate, shift, scale)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(h.sum() + x_out.sum(), (full_x, full_y, modulation))
    want = torch.autograd.grad(ref_h.sum() + ref_out.sum(), (full_x, full_y, modulation))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def adaln_inputs(B, L, D, device):
    """x, y (B, L, D) and gate, shift, scale (B, D), fp32."""
    x, y = torch.randn(B, L, D, device=device), torch.randn(B, L, D, device=device)
    gate, shift, scale = (0.5 * torch.randn(B, D, device=device) for _ in range(3))
    return x, y, gate, shift, scale


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def assert_matches(name: str, out: torch.Tensor, ref_fp32: torch.Tensor, ref_lowp: torch.Tensor = None):
    """out (kernel, any dtype) against the fp32 reference; ref_lowp: PyTorch's own low-precision result."""
    assert out.shape == ref_fp32.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref_fp32.shape)}"
    assert not out.isnan().any(), f"{name}: NaN in the output (an element left unwritten?)"
    if out.numel() == 0:
        return
    scale = max(ref_fp32.abs().max().item(), 1.0)
    error = max_error(out, ref_fp32)
    if out.dtype == torch.float32:
        assert error <= FP32_RELATIVE * scale, f"{name}: fp32 error {error:.3g} > {FP32_RELATIVE * scale:.3g}"
    else:
        store_rounding = torch.finfo(out.dtype).eps / 2 * scale
        bound = LOW_PRECISION_FACTOR * max_error(ref_lowp, ref_fp32) + store_rounding
        assert error <= bound, f"{name}: {out.dtype} error {error:.3g} > {bound:.3g} (2x PyTorch's + floor)"


def leaf(tensor: torch.Tensor, dtype) -> torch.Tensor:
    return tensor.detach().to(dtype).requires_grad_(True)


def check_op(name, kernel_fn, ref_fn, inputs, dtype, grad_outputs=None, constants=()):
    """Kernel vs reference on the same random inputs: every output and every input gradient.

    inputs: fp32 tensors (None passes through), rounded to `dtype` for every run so that all
    three see the same values: the kernel in `dtype`, the reference upcast to fp32, and
    PyTorch's own run in `dtype`. constants: indices of inputs that get no gradient (buffers).
    """
    kernel_in = [leaf(t, dtype) if isinstance(t, torch.Tensor) else t for t in inputs]
    ref_in = [leaf(t.to(dtype), torch.float32) if isinstance(t, torch.Tensor) else t for t in inputs]
    lowp_in = [leaf(t, dtype) if isinstance(t, torch.Tensor) else t for t in inputs]
    outs = _as_tuple(kernel_fn(*kernel_in))
    refs = _as_tuple(ref_fn(*ref_in))
    lowps = _as_tuple(ref_fn(*lowp_in))
    for i, (out, ref, lowp) in enumerate(zip(outs, refs, lowps)):
        assert_matches(f"{name} output {i}", out, ref, lowp)
    if grad_outputs is None:
        grad_outputs = [torch.randn_like(ref) for ref in refs]
    tensors = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and i not in constants]

    def grads(outputs, args):
        loss = sum((o.float() * g).sum() for o, g in zip(outputs, grad_outputs))
        return torch.autograd.grad(loss, [args[i] for i in tensors])

    for i, g_out, g_ref, g_lowp in zip(tensors, grads(outs, kernel_in), grads(refs, ref_in), grads(lowps, lowp_in)):
        assert g_out.dtype == kernel_in[i].dtype
        assert_matches(f"{name} grad of input {i}", g_out, g_ref, g_lowp)


def _as_tuple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
