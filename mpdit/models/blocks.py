"""Transformer pieces: adaLN modulation, attention, MLP, block, stage upsampler, final layer.

The memory-bound glue between the GEMMs runs through mpdit_kernels.ops on the backend each
module was built with (`self.backend`, set by the model); weights and function are the
same on every backend.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mpdit_kernels import ops
from mpdit_kernels.attention import attention
from mpdit_kernels.backend import TORCH, Backend


class Condition(NamedTuple):
    """What blocks and the final layer are conditioned on."""

    embedding: torch.Tensor  # (B, D): c = t_emb (+ the class vector in DiT)
    shared: Optional[torch.Tensor]  # (B, 6, D): MPDiT's shared adaLN vectors; None where each block has its own


class Branch(NamedTuple):
    """A residual branch handed on instead of added: the stream it belongs to is x + gate * output.

    This is flash-attention's Block.forward(hidden_states, residual) -> (hidden_states,
    residual) hand-off, so that add + norm fuse across block boundaries: a block returns its
    stream WITHOUT its MLP branch, plus that branch, and the next modulated LayerNorm (the
    next block's, or the final layer's) adds it in the same pass over x
    (ops.residual_adaln_modulate). Where no LayerNorm follows, `add_to` adds it.
    """

    output: torch.Tensor  # (B, L, D)
    gate: torch.Tensor  # (B, D)

    def add_to(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate.unsqueeze(1) * self.output


def modulated_norm(x, branch: Optional[Branch], shift, scale, backend: Backend) -> tuple:
    """(x', LayerNorm(x') * (1 + scale) + shift) with x' = x plus the handed-on branch, if any."""
    if branch is None:
        return x, ops.adaln_modulate(x, shift, scale, backend)
    return ops.residual_adaln_modulate(x, branch.output, branch.gate, shift, scale, backend)


def adaln_projection(hidden_size: int, chunks: int) -> nn.Sequential:
    """SiLU -> Linear(D, chunks * D): the adaLN-Zero modulation (zero-initialised by the model)."""
    return nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, chunks * hidden_size))


class Attention(nn.Module):
    """Multi-head self-attention, qkv with bias (as timm's Attention used by DiT)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, D/heads)
        out = attention(q, k, v)  # (B, heads, L, D/heads)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


class Mlp(nn.Module):
    """D -> ratio * D -> D with tanh-approximated GELU."""

    def __init__(self, hidden_size: int, mlp_ratio: float):
        super().__init__()
        hidden = int(hidden_size * mlp_ratio)
        self.fc1 = nn.Linear(hidden_size, hidden)
        self.fc2 = nn.Linear(hidden, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class TransformerBlock(nn.Module):
    """DiT block (LN without affine, eps 1e-6); with own_adaln its own adaLN-Zero projection of
    c, otherwise MPDiT's shared six vectors."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, own_adaln: bool, backend: Backend = TORCH):
        super().__init__()
        self.attn = Attention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, mlp_ratio)
        self.adaLN_modulation = adaln_projection(hidden_size, 6) if own_adaln else None
        self.backend = backend

    def modulation(self, c: Condition) -> torch.Tensor:
        """shift/scale/gate for attention and MLP, (B, 6, D)."""
        if self.adaLN_modulation is None:
            return c.shared
        return self.adaLN_modulation(c.embedding).view(c.embedding.shape[0], 6, -1)

    def forward(self, x: torch.Tensor, c: Condition, branch: Optional[Branch] = None) -> tuple:
        """x (B, L, D) and the previous block's Branch -> (x, this block's MLP Branch).

        x += gate_a * Attn(LN(x) * (1 + scale_a) + shift_a)
        x += gate_m * MLP(LN(x) * (1 + scale_m) + shift_m)      (handed on as a Branch)
        """
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(c).unbind(1)  # each (B, D)
        x, h = modulated_norm(x, branch, shift_a, scale_a, self.backend)
        x, h = ops.residual_adaln_modulate(x, self.attn(h), gate_a, shift_m, scale_m, self.backend)
        return x, Branch(self.mlp(h), gate_m)


class Upsample(nn.Module):
    """MPDiT's stage transition (docs/model.md, step 7), for a patch ratio r between two stages.

    Linear(D, r^2 D) on the image tokens -> pixel-shuffle into r x r neighbourhoods ->
    GELU (tanh) -> class tokens back in front -> LayerNorm (no affine) -> Linear(D, D).
    """

    def __init__(self, hidden_size: int, ratio: int, backend: Backend = TORCH):
        super().__init__()
        self.ratio = ratio
        self.expand = nn.Linear(hidden_size, ratio * ratio * hidden_size)
        self.refine = nn.Linear(hidden_size, hidden_size)
        self.backend = backend

    def forward(self, tokens: torch.Tensor, class_tokens: int, grid_h: int, grid_w: int) -> torch.Tensor:
        wide = self.expand(tokens[:, class_tokens:])  # (B, h*w, r^2 D)
        normed = ops.upsample_shuffle_norm(wide, tokens[:, :class_tokens], self.ratio, grid_h, grid_w,
                                           self.backend)  # (B, m + r^2 h w, D)
        return self.refine(normed)  # (B, m + r^2 h w, D)


class FinalLayer(nn.Module):
    """LN (no affine) -> modulate -> Linear(D, p*p*out) on the image tokens.

    With own_adaln (DiT) the shift/scale come from its own SiLU -> Linear(D, 2D) of c;
    otherwise it takes MPDiT's shared MLP shift/scale.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, own_adaln: bool,
                 backend: Backend = TORCH):
        super().__init__()
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = adaln_projection(hidden_size, 2) if own_adaln else None
        self.backend = backend

    def forward(self, x: torch.Tensor, c: Condition, branch: Optional[Branch] = None) -> torch.Tensor:
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(c.embedding).chunk(2, dim=1)
        else:
            shift, scale = c.shared[:, 3], c.shared[:, 4]  # the shared MLP shift / scale
        _, h = modulated_norm(x, branch, shift, scale, self.backend)
        return self.linear(h)  # (B, L, p*p*out)
