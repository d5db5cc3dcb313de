"""Transformer pieces: adaLN modulation, attention, MLP, block, stage upsampler, final layer."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mpdit_kernels import attention


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift with per-sample (B, D) shift/scale shared by all tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


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
    """DiT block. With own_adaln it maps the condition c (B, D) to its six vectors (adaLN-Zero);
    without, it receives MPDiT's shared six vectors (B, 6, D) directly."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, own_adaln: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, mlp_ratio)
        self.adaLN_modulation = adaln_projection(hidden_size, 6) if own_adaln else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.adaLN_modulation is not None:
            cond = self.adaLN_modulation(cond).view(cond.shape[0], 6, -1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = cond.unbind(1)  # each (B, D)
        x = x + gate_a.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        x = x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))
        return x


class Upsample(nn.Module):
    """MPDiT's stage transition (notes, step 7), for a patch ratio r between two stages.

    Linear(D, r^2 D) on the image tokens -> pixel-shuffle into r x r neighbourhoods ->
    GELU (tanh) -> class tokens back in front -> LayerNorm (no affine) -> Linear(D, D).
    """

    def __init__(self, hidden_size: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.expand = nn.Linear(hidden_size, ratio * ratio * hidden_size)
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.refine = nn.Linear(hidden_size, hidden_size)

    def forward(self, tokens: torch.Tensor, class_tokens: int, grid_h: int, grid_w: int) -> torch.Tensor:
        B, _, D = tokens.shape
        cls, img = tokens[:, :class_tokens], tokens[:, class_tokens:]  # (B, m, D), (B, h*w, D)
        img = self.expand(img).transpose(1, 2).reshape(B, -1, grid_h, grid_w)  # (B, r^2 D, h, w)
        img = F.pixel_shuffle(img, self.ratio).flatten(2).transpose(1, 2)  # (B, r^2 h w, D)
        img = F.gelu(img, approximate="tanh")
        return self.refine(self.norm(torch.cat([cls, img], dim=1)))  # (B, m + r^2 h w, D)


class FinalLayer(nn.Module):
    """LN (no affine) -> modulate -> Linear(D, p*p*out) on the image tokens.

    With own_adaln (DiT) the shift/scale come from its own SiLU -> Linear(D, 2D) of c;
    otherwise it is handed MPDiT's shared MLP shift/scale.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, own_adaln: bool):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = adaln_projection(hidden_size, 2) if own_adaln else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(cond).chunk(2, dim=1)
        else:
            shift, scale = cond[:, 3], cond[:, 4]  # the shared MLP shift / scale
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, L, p*p*out)
