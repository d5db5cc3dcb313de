"""Plain softmax attention in both layouts, and a stand-in `xformers` package."""
import math
import sys
import types

import torch

import mpdit_kernels.attention as dispatch


def softmax_attention(q, k, v):
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return weights @ v


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
