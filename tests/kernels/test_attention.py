"""Attention dispatch: the right path, the right numbers, and a report of what ran."""
import math
import sys
import types

import pytest
import torch

import mpdit_kernels.attention as dispatch
from mpdit.bench.attention_cases import bench_attention
from mpdit.bench.model_cases import ModelSpec
from mpdit.bench.timing import Results
from mpdit_kernels.attention import attention, attention_paths


def softmax_attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


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


def fake_xformers(monkeypatch, memory_efficient_attention):
    """An installed `xformers` whose ops.memory_efficient_attention is the given function."""
    package, ops = types.ModuleType("xformers"), types.ModuleType("xformers.ops")
    ops.memory_efficient_attention, package.ops = memory_efficient_attention, ops
    monkeypatch.setitem(sys.modules, "xformers", package)
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)
    monkeypatch.setattr(dispatch, "_fused_kernel_fits", lambda q: True)
    monkeypatch.setattr(dispatch, "_installed", {"flash_attn": False, "xformers": True})


def blhd_attention(q, k, v):
    """xformers' layout: (B, L, heads, head_dim)."""
    return softmax_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def test_xformers_path_gets_its_layout(monkeypatch):
    fake_xformers(monkeypatch, blhd_attention)
    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), softmax_attention(q, k, v), rtol=1e-5, atol=1e-5)
    assert "xformers" in attention_paths()


def test_bench_times_each_installed_library(monkeypatch, capsys):
    """The attention table has a row per installed library next to SDPA's; one that refuses is named."""
    specs = [ModelSpec("MPDiT-S/8px", "MPDiT-S", {"latent_size": 8, "stages": ((4, 1), (2, 1))})]
    fake_xformers(monkeypatch, blhd_attention)
    monkeypatch.setattr(dispatch, "_used", set())
    results = Results("cpu")
    bench_attention(results, specs, batch=1, dtype=torch.float32, device="cpu")
    providers = {row["provider"] for row in results.rows}
    assert "xformers" in providers and any(p.startswith("sdpa default") for p in providers)
    assert "xformers" not in attention_paths()  # the report's "attention paths" are the models' calls

    def refuses(q, k, v):
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`\nmore")

    fake_xformers(monkeypatch, refuses)
    results = Results("cpu")
    bench_attention(results, specs, batch=1, dtype=torch.float32, device="cpu")
    assert "xformers" not in {row["provider"] for row in results.rows} and results.rows
    assert "xformers skipped: No operator found for `memory_efficient_attention_forward`" in capsys.readouterr().err
