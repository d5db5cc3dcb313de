"""fine_entry (refine output + skip + position table on the image tokens) on every fused backend."""
import pytest
import torch

from helpers.kernels import DTYPES, FINE_CASES, check_op, fine_entry_inputs
from mpdit_kernels import ops
from mpdit_kernels.ops import fine_entry_ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FINE_CASES)
@pytest.mark.parametrize("with_skip", [True, False])
def test_fine_entry(poisoned, fused, dtype, case, with_skip):
    check_op("fine_entry", lambda a, b, c: ops.fine_entry(a, b, c, fused.backend), fine_entry_ref,
             fine_entry_inputs(case, with_skip, fused.device), dtype)


def test_mixed_dtypes_follow_eager_promotion(fused):
    refined = torch.randn(2, 19, 24, device=fused.device).bfloat16().requires_grad_()
    skip = torch.randn(2, 16, 24, device=fused.device, requires_grad=True)
    pos = torch.randn(16, 24, device=fused.device).bfloat16().requires_grad_()
    out = ops.fine_entry(refined, skip, pos, fused.backend)
    assert out.dtype == fine_entry_ref(refined, skip, pos).dtype == torch.float32
    torch.testing.assert_close(out, fine_entry_ref(refined.float(), skip, pos.float()), rtol=1e-6, atol=1e-6)
    grads = torch.autograd.grad(out.sum(), (refined, skip, pos))
    assert [g.dtype for g in grads] == [torch.bfloat16, torch.float32, torch.bfloat16]


@pytest.mark.parametrize("mixed", [False, True])
def test_opcheck(fused, mixed):
    refined = torch.randn(2, 19, 24, device=fused.device)
    refined = (refined.bfloat16() if mixed else refined).requires_grad_()
    skip = torch.randn(2, 16, 24, device=fused.device, requires_grad=True)
    pos = torch.randn(16, 24, device=fused.device)
    torch.library.opcheck(torch.ops.mpdit.fine_entry.default, (refined, skip, pos, fused.backend.name))


@pytest.mark.parametrize("shapes, message", [
    (((2, 19, 24), (2, 15, 24), (16, 24)), r"skip has shape \(2, 15, 24\), expected \(2, 16, 24\)"),
    (((2, 19, 24), None, (16, 20)), r"pos has shape \(16, 20\), expected \(16, 24\)"),
    (((2, 19, 24), None, (20, 24)), r"pos has 20 tokens, more than refined's 19"),
    (((19, 24), None, (16, 24)), r"refined must be a \(B, tokens, channels\) tensor, got \(19, 24\)"),
])
def test_bad_inputs(every_backend, shapes, message):
    refined, skip, pos = (None if s is None else torch.randn(s, device=every_backend.device) for s in shapes)
    with pytest.raises(ValueError, match=f"fine_entry: {message}"):
        ops.fine_entry(refined, skip, pos, every_backend.backend)
