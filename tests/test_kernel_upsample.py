"""Fused upsample (pixel shuffle + GELU + class tokens + LayerNorm) and fine-stage entry."""
import pytest
import torch

pytest.importorskip("triton")  # the Triton kernels; the torch backend is tested without it

from kernel_checks import DTYPES, FINE_CASES, UPSAMPLE_CASES, check_op, fine_entry_inputs, upsample_inputs
from mpdit_kernels.upsample import fine_entry, fine_entry_ref, upsample_shuffle_norm, upsample_shuffle_norm_ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", UPSAMPLE_CASES)
def test_upsample_shuffle_norm(poisoned, device, dtype, case):
    _, h, w, _, _, r = case
    check_op("upsample_shuffle_norm", lambda a, b: upsample_shuffle_norm(a, b, r, h, w),
             lambda a, b: upsample_shuffle_norm_ref(a, b, r, h, w), upsample_inputs(case, device), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FINE_CASES)
@pytest.mark.parametrize("with_skip", [True, False])
def test_fine_entry(poisoned, device, dtype, case, with_skip):
    check_op("fine_entry", fine_entry, fine_entry_ref, fine_entry_inputs(case, with_skip, device), dtype)


def test_opcheck(device):
    wide = torch.randn(2, 4, 4 * 24, device=device, requires_grad=True)
    cls = torch.randn(2, 3, 24, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.mpdit.upsample_shuffle_norm.default, (wide, cls, 2, 2, 2))
    refined = torch.randn(2, 19, 24, device=device, requires_grad=True)
    skip = torch.randn(2, 16, 24, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.mpdit.fine_entry.default, (refined, skip, torch.randn(16, 24, device=device)))


@pytest.mark.parametrize("call, message", [
    (lambda d: upsample_shuffle_norm(torch.randn(2, 5, 96, device=d), torch.randn(2, 3, 24, device=d), 2, 2, 2),
     r"wide has 5 tokens, expected grid_h \* grid_w = 4"),
    (lambda d: upsample_shuffle_norm(torch.randn(2, 4, 90, device=d), torch.randn(2, 3, 24, device=d), 2, 2, 2),
     r"ratio=2: expected >= 2 dividing wide's 90 channels"),
    (lambda d: upsample_shuffle_norm(torch.randn(2, 4, 96, device=d), torch.randn(2, 3, 20, device=d), 2, 2, 2),
     r"cls has shape \(2, 3, 20\), expected \(2, 3, 24\)"),
    (lambda d: upsample_shuffle_norm(torch.randn(2, 4, 96, device=d).half().int(), torch.randn(2, 3, 24, device=d),
                                     2, 2, 2), r"wide has dtype torch.int32"),
    (lambda d: fine_entry(torch.randn(2, 19, 24, device=d), torch.randn(2, 15, 24, device=d),
                          torch.randn(16, 24, device=d)), r"skip has shape \(2, 15, 24\), expected \(2, 16, 24\)"),
    (lambda d: fine_entry(torch.randn(2, 19, 24, device=d), None, torch.randn(16, 20, device=d)),
     r"pos has shape \(16, 20\), expected \(16, 24\)"),
    (lambda d: fine_entry(torch.randn(2, 19, 24, device=d), None, torch.randn(20, 24, device=d)),
     r"pos has 20 tokens, more than refined's 19"),
])
def test_bad_inputs(device, call, message):
    with pytest.raises(ValueError, match=message):
        call(device)
