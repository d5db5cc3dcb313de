"""Multi-head attention entry point shared by coarse and fine blocks.

For now it is PyTorch's scaled_dot_product_attention, which picks the best backend it
has for the device; the fused-kernel dispatch (flash-attn, xformers) plugs in here.
"""
import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax attention. q, k, v: (B, heads, L, head_dim) -> (B, heads, L, head_dim)."""
    return F.scaled_dot_product_attention(q, k, v)
