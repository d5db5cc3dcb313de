"""The model against a plain functional re-statement of docs/model.md, step by step.

The reference below uses only the model's weights and the text of
docs/model.md (steps 1-10; DiT for the baselines), written without
the model's helpers: explicit patch extraction, explicit DFT, explicit pixel shuffle.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.models import random_inputs, randomize_, tiny_model
from helpers.official_reference import gelu_tanh, layer_norm


def patches(x, p):
    """(B, C, H, W) -> (B, H/p * W/p, C * p * p), row-major patches, (c, i, j) inside (Conv2d's order)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def linear(x, layer):
    return x @ layer.weight.T + layer.bias


def patch_embed(x, embed):
    conv = embed.proj
    return patches(x, conv.kernel_size[0]) @ conv.weight.reshape(conv.out_channels, -1).T + conv.bias


def fno_time(t, emb):
    """Step 3, with an explicit real DFT instead of torch.fft."""
    layers, _, _, modes, _ = emb.spectral_weight.shape
    n = emb.grid.numel()
    points = torch.linspace(-1, 1, n)[None, :] + t[:, None]  # (B, n)
    h = points[..., None] * emb.lift.weight[:, 0] + emb.lift.bias  # (B, n, width)
    k, pos = torch.arange(modes, dtype=torch.float64), torch.arange(n, dtype=torch.float64)
    forward_dft = torch.exp(-2j * math.pi * k[:, None] * pos[None] / n)  # (modes, n)
    weight_inverse = torch.full((modes,), 2.0, dtype=torch.float64)
    weight_inverse[0] = 1.0
    inverse_dft = weight_inverse[:, None] * torch.exp(2j * math.pi * k[:, None] * pos[None] / n) / n
    for i in range(layers):
        coeffs = torch.einsum("bni,mn->bmi", h.double().to(torch.complex128), forward_dft)  # (B, modes, in)
        spectral = emb.spectral_weight[i]
        w = torch.complex(spectral[..., 0], spectral[..., 1]).to(torch.complex128)  # (in, out, modes)
        mixed = torch.einsum("bmi,iom->bmo", coeffs, w)
        spectral_out = torch.einsum("bmo,mn->bno", mixed, inverse_dft).real.float()
        local = h @ emb.pointwise_weight[i].T + emb.pointwise_bias[i]
        h = spectral_out + local
        if i < layers - 1:
            h = F.gelu(h)
    return linear(h.mean(dim=1), emb.proj)


def mlp_time(t, emb):
    half = emb.frequency_size // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    args = t[:, None] * freqs
    freq = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return linear(F.silu(linear(freq, emb.mlp[0])), emb.mlp[2])


def block(x, blk, six):
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = [v[:, None] for v in six]
    B, L, D = x.shape
    h = layer_norm(x) * (1 + scale_a) + shift_a
    q, k, v = linear(h, blk.attn.qkv).split(D, dim=-1)
    heads = blk.attn.num_heads
    q, k, v = [u.reshape(B, L, heads, D // heads).transpose(1, 2) for u in (q, k, v)]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), dim=-1)
    attn = (weights @ v).transpose(1, 2).reshape(B, L, D)
    x = x + gate_a * linear(attn, blk.attn.proj)
    h = layer_norm(x) * (1 + scale_m) + shift_m
    return x + gate_m * linear(gelu_tanh(linear(h, blk.mlp.fc1)), blk.mlp.fc2)


def upsample(tokens, up, m, grid):
    """Step 7: Linear(D, 4D), 2 x 2 pixel shuffle (channel block a*2+b -> sub-position (a, b)), GELU."""
    cls, img = tokens[:, :m], tokens[:, m:]
    B, _, D = img.shape
    wide = linear(img, up.expand).reshape(B, grid, grid, D, 2, 2)  # pixel_shuffle's channel order (D, a, b)
    fine = wide.permute(0, 1, 4, 2, 5, 3).reshape(B, 4 * grid * grid, D)  # row 2i+a, column 2j+b
    fine = gelu_tanh(fine)
    return linear(layer_norm(torch.cat([cls, fine], dim=1)), up.refine)


def reference_forward(model, x, t, y):
    cfg = model.config
    m, D = cfg.class_tokens, cfg.hidden_size
    B, C, H, W = x.shape
    t_emb = fno_time(t, model.t_embedder) if cfg.time_embed == "fno" else mlp_time(t, model.t_embedder)
    table = model.y_embedder.embedding_table.weight[y]  # (B, max(m, 1) * D)
    c = t_emb if m else t_emb + table
    if cfg.shared_adaln:
        shared = linear(F.silu(c), model.adaLN_modulation[1]).chunk(6, dim=1)
    tokens = patch_embed(x, model.x_embedder) + model.pos_embed
    if m:
        tokens = torch.cat([table.reshape(B, m, D), tokens], dim=1)
    blocks = iter(model.blocks)
    for stage, (_, depth) in enumerate(cfg.stages):
        if stage:
            tokens = upsample(tokens, model.upsamplers[stage - 1], m, H // cfg.stages[stage - 1][0])
            skip = linear(patch_embed(x, model.skip_embedders[stage - 1][0]), model.skip_embedders[stage - 1][1])
            image = tokens[:, m:] + skip + model.stage_pos_embeds[stage - 1]
            tokens = torch.cat([tokens[:, :m], image], dim=1)
        for _ in range(depth):
            blk = next(blocks)
            six = shared if cfg.shared_adaln else linear(F.silu(c), blk.adaLN_modulation[1]).chunk(6, dim=1)
            tokens = block(tokens, blk, six)
    final = model.final_layer
    if cfg.shared_adaln:
        shift, scale = shared[3], shared[4]
    else:
        shift, scale = linear(F.silu(c), final.adaLN_modulation[1]).chunk(2, dim=1)
    out = linear(layer_norm(tokens[:, m:]) * (1 + scale[:, None]) + shift[:, None], final.linear)
    p = cfg.stages[-1][0]
    out = out.reshape(B, H // p, W // p, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(B, -1, H, W)
    return out[:, :C]


@pytest.mark.parametrize("name, overrides", [
    ("MPDiT-S", {}),
    ("MPDiT-S", {"stages": [(8, 2), (4, 2), (2, 2)]}),
    ("DiT-S/2", {}),
    ("DiT-S/4", {"shared_adaln": True, "class_tokens": 4, "time_embed": "fno"}),
])
def test_model_matches_the_notes(name, overrides):
    model = randomize_(tiny_model(name, **overrides), std=0.1)
    x, t, y = random_inputs(model, batch=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), reference_forward(model, x, t, y), rtol=1e-4, atol=1e-5)
