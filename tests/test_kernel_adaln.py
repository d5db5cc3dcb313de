"""Fused residual + shared-AdaLN modulation against its PyTorch reference."""
import pytest
import torch

pytest.importorskip("triton")  # the Triton kernels; the torch backend is tested without it

from kernel_checks import ADALN_SHAPES, DTYPES, adaln_inputs, check_op, check_strided_rows_and_expanded_gradients
from mpdit_kernels.adaln import (adaln_modulate, adaln_modulate_ref, residual_adaln_modulate,
                                 residual_adaln_modulate_ref)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ADALN_SHAPES)
def test_residual_variant(poisoned, device, dtype, shape):
    check_op("residual_adaln_modulate", residual_adaln_modulate, residual_adaln_modulate_ref,
             adaln_inputs(*shape, device), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ADALN_SHAPES)
def test_plain_variant(poisoned, device, dtype, shape):
    x, _, _, shift, scale = adaln_inputs(*shape, device)
    check_op("adaln_modulate", adaln_modulate, adaln_modulate_ref, (x, shift, scale), dtype)


def test_strided_rows_and_expanded_gradients(poisoned, device):
    check_strided_rows_and_expanded_gradients(residual_adaln_modulate, residual_adaln_modulate_ref, device)


def test_channels_first_layout_is_handled(device):
    """A patch embedding's (B, D, N) -> (B, N, D) transpose has strided rows: copied, not misread."""
    x, y, gate, shift, scale = adaln_inputs(2, 17, 72, device)
    x_t = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert x_t.stride(-1) != 1
    torch.testing.assert_close(residual_adaln_modulate(x_t, y, gate, shift, scale)[1],
                               residual_adaln_modulate_ref(x, y, gate, shift, scale)[1], rtol=1e-5, atol=1e-5)


def test_mixed_dtypes_follow_eager_promotion(device):
    """Under autocast an fp32 residual stream meets bf16 branch outputs: outputs promote like eager."""
    x = torch.randn(2, 17, 72, device=device)
    y, gate, shift, scale = (t.bfloat16() for t in adaln_inputs(2, 17, 72, device)[1:])
    x_out, h = residual_adaln_modulate(x, y, gate, shift, scale)
    eager_out, eager_h = residual_adaln_modulate_ref(x, y, gate, shift, scale)
    assert (x_out.dtype, h.dtype) == (eager_out.dtype, eager_h.dtype) == (torch.float32, torch.float32)
    # the kernel computes gate * y in fp32 (eager rounds it to bf16 first): compare with the upcast inputs
    ref_out, ref_h = residual_adaln_modulate_ref(x, y.float(), gate.float(), shift.float(), scale.float())
    torch.testing.assert_close(x_out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-5)


def test_opcheck(device):
    x, y, gate, shift, scale = (t.requires_grad_() for t in adaln_inputs(2, 17, 72, device))
    torch.library.opcheck(torch.ops.mpdit.residual_adaln_modulate.default, (x, y, gate, shift, scale))
    torch.library.opcheck(torch.ops.mpdit.adaln_modulate.default, (x, shift, scale))


@pytest.mark.parametrize("make, message", [
    (lambda x, y, g, s, c: (x.double(), y, g, s, c), r"x has dtype torch.float64"),
    (lambda x, y, g, s, c: (x.long(), y, g, s, c), r"x has dtype torch.int64"),
    (lambda x, y, g, s, c: (x, y[:, :5], g, s, c), r"y has shape \(2, 5, 72\), expected \(2, 17, 72\)"),
    (lambda x, y, g, s, c: (x, y, g[:1], s, c), r"gate has shape \(1, 72\), expected \(2, 72\)"),
    (lambda x, y, g, s, c: (x, y, g, s, c[:, :70]), r"scale has shape \(2, 70\)"),
    (lambda x, y, g, s, c: (x[0], y, g, s, c), r"x must be a \(B, L, D\) tensor"),
])
def test_bad_inputs(device, make, message):
    with pytest.raises(ValueError, match=message):
        residual_adaln_modulate(*make(*adaln_inputs(2, 17, 72, device)))


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    import mpdit_kernels._launch
    from mpdit_kernels import KernelUnavailable

    monkeypatch.setattr(mpdit_kernels._launch, "INTERPRET", False)
    x, _, _, shift, scale = adaln_inputs(1, 4, 72, "cpu")
    with pytest.raises(KernelUnavailable, match="CPU tensors; Triton kernels need CUDA tensors, or TRITON_INTERPRET=1"):
        adaln_modulate(x, shift, scale)
