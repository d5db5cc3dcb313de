"""Transformer pieces: adaLN modulation, attention, MLP, block, stage upsampler, final layer.

The memory-bound glue between the GEMMs goes through `ops`, a kernel backend
(mpdit_kernels.backend): plain PyTorch or fused Triton, the same model either way.
Blocks hand their MLP branch on as `pending` = (branch output, gate) instead of adding it,
so the next LayerNorm adds it in the same pass (x + gate * y, then LN and modulation).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def forward(self, x: torch.Tensor, ops) -> torch.Tensor:
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, D/heads)
        out = ops.attention(q, k, v)  # (B, heads, L, D/heads)
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
    """DiT block (LN without affine, eps 1e-6). With own_adaln it maps the condition c (B, D)
    to its six vectors (adaLN-Zero); without, it receives MPDiT's shared six (B, 6, D)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, own_adaln: bool):
        super().__init__()
        self.attn = Attention(hidden_size, num_heads)
        self.mlp = Mlp(hidden_size, mlp_ratio)
        self.adaLN_modulation = adaln_projection(hidden_size, 6) if own_adaln else None

    def forward(self, x: torch.Tensor, pending, cond: torch.Tensor, ops):
        """x (B, L, D), pending (y, gate) or None -> (x, pending) with this block's MLP branch pending.

        x += gate_a * Attn(LN(x) * (1 + scale_a) + shift_a)
        x += gate_m * MLP(LN(x) * (1 + scale_m) + shift_m)      (the second add is deferred)
        """
        if self.adaLN_modulation is not None:
            cond = self.adaLN_modulation(cond).view(cond.shape[0], 6, -1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = cond.unbind(1)  # each (B, D)
        if pending is None:
            h = ops.adaln_modulate(x, shift_a, scale_a)
        else:
            x, h = ops.residual_adaln_modulate(x, pending[0], pending[1], shift_a, scale_a)
        x, h = ops.residual_adaln_modulate(x, self.attn(h, ops), gate_a, shift_m, scale_m)
        return x, (self.mlp(h), gate_m)


def apply_pending(x: torch.Tensor, pending) -> torch.Tensor:
    """Add a deferred branch, x + gate * y, where no LayerNorm follows to fuse it into."""
    return x if pending is None else x + pending[1].unsqueeze(1) * pending[0]


class Upsample(nn.Module):
    """MPDiT's stage transition (notes, step 7), for a patch ratio r between two stages.

    Linear(D, r^2 D) on the image tokens -> pixel-shuffle into r x r neighbourhoods ->
    GELU (tanh) -> class tokens back in front -> LayerNorm (no affine) -> Linear(D, D).
    """

    def __init__(self, hidden_size: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.expand = nn.Linear(hidden_size, ratio * ratio * hidden_size)
        self.refine = nn.Linear(hidden_size, hidden_size)

    def forward(self, tokens: torch.Tensor, class_tokens: int, grid_h: int, grid_w: int, ops) -> torch.Tensor:
        wide = self.expand(tokens[:, class_tokens:])  # (B, h*w, r^2 D)
        normed = ops.upsample_shuffle_norm(wide, tokens[:, :class_tokens], self.ratio, grid_h, grid_w)
        return self.refine(normed)  # (B, m + r^2 h w, D)


class FinalLayer(nn.Module):
    """LN (no affine) -> modulate -> Linear(D, p*p*out) on the image tokens.

    With own_adaln (DiT) the shift/scale come from its own SiLU -> Linear(D, 2D) of c;
    otherwise it is handed MPDiT's shared MLP shift/scale.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, own_adaln: bool):
        super().__init__()
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = adaln_projection(hidden_size, 2) if own_adaln else None

    def forward(self, x: torch.Tensor, pending, cond: torch.Tensor, ops) -> torch.Tensor:
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(cond).chunk(2, dim=1)
        else:
            shift, scale = cond[:, 3], cond[:, 4]  # the shared MLP shift / scale
        if pending is None:
            h = ops.adaln_modulate(x, shift, scale)
        else:
            _, h = ops.residual_adaln_modulate(x, pending[0], pending[1], shift, scale)
        return self.linear(h)  # (B, L, p*p*out)
