"""residual_adaln_modulate / adaln_modulate on every fused backend against the reference."""
import pytest
import torch

from helpers.kernels import ADALN_SHAPES, DTYPES, adaln_inputs, check_op, check_strided_rows_and_expanded_gradients
from mpdit_kernels import ops
from mpdit_kernels.backend import TORCH
from mpdit_kernels.ops import adaln_modulate_ref, residual_adaln_modulate_ref


def residual_on(backend):
    return lambda x, y, gate, shift, scale: ops.residual_adaln_modulate(x, y, gate, shift, scale, backend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ADALN_SHAPES)
def test_residual_variant(poisoned, fused, dtype, shape):
    check_op("residual_adaln_modulate", residual_on(fused.backend), residual_adaln_modulate_ref,
             adaln_inputs(*shape, fused.device), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ADALN_SHAPES)
def test_plain_variant(poisoned, fused, dtype, shape):
    x, _, _, shift, scale = adaln_inputs(*shape, fused.device)
    check_op("adaln_modulate", lambda a, b, c: ops.adaln_modulate(a, b, c, fused.backend), adaln_modulate_ref,
             (x, shift, scale), dtype)


def test_strided_rows_and_expanded_gradients(poisoned, fused):
    check_strided_rows_and_expanded_gradients(residual_on(fused.backend), residual_adaln_modulate_ref, fused.device)


def test_channels_first_layout_is_handled(fused):
    """A patch embedding's (B, D, N) -> (B, N, D) transpose has strided rows: copied, not misread."""
    x, y, gate, shift, scale = adaln_inputs(2, 17, 72, fused.device)
    x_t = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert x_t.stride(-1) != 1
    torch.testing.assert_close(residual_on(fused.backend)(x_t, y, gate, shift, scale)[1],
                               residual_adaln_modulate_ref(x, y, gate, shift, scale)[1], rtol=1e-5, atol=1e-5)


def test_mixed_dtypes_follow_eager_promotion(fused):
    """Under autocast an fp32 residual stream meets bf16 branch outputs: outputs promote like
    eager, and each gradient comes back in its input's dtype, on every backend."""
    x = torch.randn(2, 17, 72, device=fused.device, requires_grad=True)
    y, gate, shift, scale = (t.bfloat16().requires_grad_() for t in adaln_inputs(2, 17, 72, fused.device)[1:])
    x_out, h = residual_on(fused.backend)(x, y, gate, shift, scale)
    eager_out, eager_h = residual_adaln_modulate_ref(x, y, gate, shift, scale)
    assert (x_out.dtype, h.dtype) == (eager_out.dtype, eager_h.dtype) == (torch.float32, torch.float32)
    # the kernels compute gate * y in fp32 (eager rounds it to bf16 first): compare with the upcast inputs
    ref_out, ref_h = residual_adaln_modulate_ref(x, y.float(), gate.float(), shift.float(), scale.float())
    torch.testing.assert_close(x_out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(h.sum() + x_out.sum(), (x, y, gate, shift, scale))
    assert [g.dtype for g in grads] == [torch.float32] + [torch.bfloat16] * 4


def test_h_is_written_in_the_autocast_dtype(fused):
    """Under autocast h feeds a matrix product: every backend (the torch one too) returns it in
    the autocast dtype, rounded once from the fp32 result, and its gradient flows back in that
    dtype; the residual stream x_out keeps the promoted dtype."""
    x = torch.randn(2, 17, 72, device=fused.device, requires_grad=True)
    y, gate, shift, scale = (t.bfloat16().requires_grad_() for t in adaln_inputs(2, 17, 72, fused.device)[1:])
    for backend in (fused.backend, TORCH):
        # the same computation without autocast: the kernels form gate * y in fp32, eager in bf16
        branch = (y, gate, shift, scale)
        wide = tuple(t.float() for t in branch) if backend is not TORCH else branch
        expected_out, expected_h = residual_adaln_modulate_ref(x, *wide)
        with torch.autocast(torch.device(fused.device).type, dtype=torch.bfloat16):
            x_out, h = residual_on(backend)(x, y, gate, shift, scale)
            plain = ops.adaln_modulate(x, shift, scale, backend)
        assert (x_out.dtype, h.dtype, plain.dtype) == (torch.float32, torch.bfloat16, torch.bfloat16), backend.name
        assert expected_h.dtype == torch.float32
        torch.testing.assert_close(x_out, expected_out, rtol=1e-5, atol=1e-5)
        # within one bf16 ulp of the fp32 result (its fp32 rounding differs slightly per backend)
        torch.testing.assert_close(h.float(), expected_h, rtol=2 ** -7, atol=1e-4)
        grads = torch.autograd.grad((h.float() ** 2).sum(), (x, y, gate, shift, scale))
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("mixed", [False, True])
def test_opcheck(fused, mixed):
    """Schema, fake implementations and autograd registration agree with the backend's kernels,
    also with mixed input dtypes (the fakes promise each output's and each gradient's dtype)."""
    x, y, gate, shift, scale = adaln_inputs(2, 17, 24, fused.device)
    if mixed:
        y, gate, scale = y.bfloat16(), gate.bfloat16(), scale.bfloat16()
    x, y, gate, shift, scale = (t.requires_grad_() for t in (x, y, gate, shift, scale))
    name = fused.backend.name
    h_dtype = torch.bfloat16 if mixed else torch.float32  # mixed: h written in an autocast dtype
    torch.library.opcheck(torch.ops.mpdit.residual_adaln_modulate.default, (x, y, gate, shift, scale, h_dtype, name))
    torch.library.opcheck(torch.ops.mpdit.adaln_modulate.default, (x, shift, scale, h_dtype, name))
    mean, rstd = torch.randn(2, 17, device=fused.device), torch.rand(2, 17, device=fused.device) + 0.5
    dx_out, dh = torch.randn_like(x), torch.randn_like(x)
    saved = [t.detach() for t in (x, y, gate, scale)]
    torch.library.opcheck(torch.ops.mpdit.residual_adaln_modulate_backward.default,
                          (*saved, mean, rstd, dx_out, dh, name))


@pytest.mark.parametrize("make, message", [
    (lambda x, y, g, s, c: (x.double(), y, g, s, c), r"x has dtype torch.float64"),
    (lambda x, y, g, s, c: (x.long(), y, g, s, c), r"x has dtype torch.int64"),
    (lambda x, y, g, s, c: (x, y[:, :5], g, s, c), r"y has shape \(2, 5, 72\), expected \(2, 17, 72\)"),
    (lambda x, y, g, s, c: (x, y, g[:1], s, c), r"gate has shape \(1, 72\), expected \(2, 72\)"),
    (lambda x, y, g, s, c: (x, y, g, s, c[:, :70]), r"scale has shape \(2, 70\)"),
    (lambda x, y, g, s, c: (x[0], y, g, s, c), r"x must be a \(B, L, D\) tensor"),
])
def test_bad_inputs(every_backend, make, message):
    with pytest.raises(ValueError, match=f"residual_adaln_modulate: {message}"):
        residual_on(every_backend.backend)(*make(*adaln_inputs(2, 17, 72, every_backend.device)))


@pytest.mark.parametrize("index", range(6))
def test_every_tuning_config(poisoned, monkeypatch, device, index):
    """The autotuner may pick any config on a GPU: each one (rows per program, rows in flight,
    warps) computes the same function, at token counts that leave partial tiles."""
    from mpdit_kernels.backend import TRITON
    from mpdit_kernels.triton import adaln, runtime

    if runtime.unavailable_reason(device) is not None:
        pytest.skip(runtime.unavailable_reason(device))
    assert len(adaln.FORWARD_CONFIGS) == len(adaln.BACKWARD_CONFIGS) == 6
    monkeypatch.setattr(runtime, "forced_config", index)
    for kernel in (adaln._adaln_fwd_kernel, adaln._adaln_bwd_kernel):
        monkeypatch.setattr(kernel, "cache", {})
    for shape in ((2, 17, 72), (1, 5, 40)):
        check_op("residual_adaln_modulate", residual_on(TRITON), residual_adaln_modulate_ref,
                 adaln_inputs(*shape, device), torch.float32)
        x, _, _, shift, scale = adaln_inputs(*shape, device)
        check_op("adaln_modulate", lambda a, b, c: ops.adaln_modulate(a, b, c, TRITON), adaln_modulate_ref,
                 (x, shift, scale), torch.float32)
