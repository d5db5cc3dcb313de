"""Attention dispatch: the right path, the right numbers, and a report of what ran."""

import pytest
import torch

import mpdit_kernels.attention as dispatch
from helpers.attention import blhd_attention, fake_xformers, softmax_attention
from mpdit_kernels.attention import attention, attention_paths


@pytest.mark.parametrize("shape", [(1, 2, 17, 72), (3, 6, 80, 64), (2, 16, 272, 72)])
def test_matches_softmax_attention_and_reports_its_path(shape):
    q, k, v = (torch.randn(shape) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), softmax_attention(q, k, v), rtol=1e-5, atol=1e-5)
    assert "sdpa-cpu" in attention_paths()


def test_forced_math_path(monkeypatch):
    monkeypatch.setenv("MPDIT_ATTENTION", "math")
    q, k, v = (torch.randn(2, 4, 33, 72) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), softmax_attention(q, k, v), rtol=1e-5, atol=1e-5)
    assert "sdpa-math" in attention_paths()


def test_unknown_forced_path(monkeypatch):
    monkeypatch.setenv("MPDIT_ATTENTION", "flash3")
    with pytest.raises(ValueError, match=r"MPDIT_ATTENTION='flash3': expected one of"):
        attention(*(torch.randn(1, 1, 4, 8) for _ in range(3)))


def test_preference_order(monkeypatch):
    """flash_attn first, then xformers, then SDPA, and the fused kernels only where they fit."""
    q = torch.randn(1, 1, 4, 72)
    monkeypatch.setattr(dispatch, "_fused_kernel_fits", lambda q: True)
    monkeypatch.setattr(dispatch, "_installed", {"flash_attn": True, "xformers": True})
    assert dispatch.choose_path(q) == "flash_attn"
    monkeypatch.setattr(dispatch, "_installed", {"flash_attn": False, "xformers": True})
    assert dispatch.choose_path(q) == "xformers"
    monkeypatch.setattr(dispatch, "_installed", {"flash_attn": False, "xformers": False})
    assert dispatch.choose_path(q) == "sdpa"
    monkeypatch.setattr(dispatch, "_fused_kernel_fits", lambda q: False)
    monkeypatch.setattr(dispatch, "_installed", {"flash_attn": True, "xformers": True})
    assert dispatch.choose_path(q) == "sdpa"


def test_fused_kernels_fit_half_precision_cuda_heads_up_to_256():
    cpu = torch.empty(1, 1, 1, 72, dtype=torch.bfloat16)
    assert not dispatch._fused_kernel_fits(cpu)  # CUDA only
    if torch.cuda.is_available():
        assert dispatch._fused_kernel_fits(cpu.cuda())  # XL's head width 72
        assert not dispatch._fused_kernel_fits(cpu.cuda().float())
        assert not dispatch._fused_kernel_fits(torch.empty(1, 1, 1, 260, dtype=torch.bfloat16, device="cuda"))


def test_xformers_path_gets_its_layout(monkeypatch):
    fake_xformers(monkeypatch, blhd_attention)
    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), softmax_attention(q, k, v), rtol=1e-5, atol=1e-5)
    assert "xformers" in attention_paths()
