"""upsample_shuffle_norm (pixel shuffle + GELU + class tokens + LayerNorm) on every fused backend."""
import pytest
import torch

from helpers.kernels import DTYPES, UPSAMPLE_CASES, check_op, upsample_inputs
from mpdit_kernels import ops
from mpdit_kernels.ops import upsample_shuffle_norm_ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", UPSAMPLE_CASES)
def test_upsample_shuffle_norm(poisoned, fused, dtype, case):
    _, h, w, _, _, r = case
    check_op("upsample_shuffle_norm", lambda a, b: ops.upsample_shuffle_norm(a, b, r, h, w, fused.backend),
             lambda a, b: upsample_shuffle_norm_ref(a, b, r, h, w), upsample_inputs(case, fused.device), dtype)


def test_mixed_dtypes_follow_eager_promotion(fused):
    wide = torch.randn(2, 4, 4 * 24, device=fused.device).bfloat16().requires_grad_()
    cls = torch.randn(2, 3, 24, device=fused.device, requires_grad=True)
    out = ops.upsample_shuffle_norm(wide, cls, 2, 2, 2, fused.backend)
    assert out.dtype == upsample_shuffle_norm_ref(wide, cls, 2, 2, 2).dtype == torch.float32
    torch.testing.assert_close(out, upsample_shuffle_norm_ref(wide.float(), cls, 2, 2, 2), rtol=1e-5, atol=1e-5)
    assert [g.dtype for g in torch.autograd.grad(out.sum(), (wide, cls))] == [torch.bfloat16, torch.float32]


@pytest.mark.parametrize("mixed", [False, True])
def test_opcheck(fused, mixed):
    wide = torch.randn(2, 4, 4 * 24, device=fused.device)
    wide = (wide.bfloat16() if mixed else wide).requires_grad_()
    cls = torch.randn(2, 3, 24, device=fused.device, requires_grad=True)
    torch.library.opcheck(torch.ops.mpdit.upsample_shuffle_norm.default, (wide, cls, 2, 2, 2, fused.backend.name))
    mean, rstd = torch.randn(2, 19, device=fused.device), torch.rand(2, 19, device=fused.device) + 0.5
    dout = torch.randn(2, 19, 24, device=fused.device)
    torch.library.opcheck(torch.ops.mpdit.upsample_shuffle_norm_backward.default,
                          (wide.detach(), cls.detach(), mean, rstd, dout, 2, 2, fused.backend.name))


@pytest.mark.parametrize("shapes, message", [
    (((2, 5, 96), (2, 3, 24)), r"wide has 5 tokens, expected grid_h \* grid_w = 4"),
    (((2, 4, 90), (2, 3, 24)), r"ratio=2: expected >= 2 dividing wide's 90 channels"),
    (((2, 4, 96), (2, 3, 20)), r"cls has shape \(2, 3, 20\), expected \(2, 3, 24\)"),
    (((2, 4, 96), (3, 24)), r"cls must be a \(B, tokens, channels\) tensor, got \(3, 24\)"),
])
def test_bad_inputs(every_backend, shapes, message):
    wide, cls = (torch.randn(shape, device=every_backend.device) for shape in shapes)
    with pytest.raises(ValueError, match=f"upsample_shuffle_norm: {message}"):
        ops.upsample_shuffle_norm(wide, cls, 2, 2, 2, every_backend.backend)


def test_integer_input_is_refused(fused):
    wide, cls = torch.ones(2, 4, 96, dtype=torch.int32, device=fused.device), torch.randn(2, 3, 24, device=fused.device)
    with pytest.raises(ValueError, match=r"wide has dtype torch.int32"):
        ops.upsample_shuffle_norm(wide, cls, 2, 2, 2, fused.backend)
