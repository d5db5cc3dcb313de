"""The official DiT, SiT and reference-MPDiT forwards re-stated as plain functions of an
official-layout state dict, from docs/checkpoint-layouts.md alone (no engine code):
explicit patch extraction, explicit pixel shuffle, torch.fft for the FNO as the reference uses."""
import math

import torch
import torch.nn.functional as F


def linear(x, sd, name):
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def layer_norm(x):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-6)


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def patch_embed(x, sd, name):
    """timm PatchEmbed: Conv2d with kernel = stride = p, tokens row-major."""
    weight = sd[name + ".proj.weight"]  # (D, C, p, p)
    D, C, p, _ = weight.shape
    B, _, H, W = x.shape
    patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)
    return patches @ weight.reshape(D, -1).T + sd[name + ".proj.bias"]


def timestep_mlp(t, sd, name):
    """freq_k = exp(-ln(10000) k / 128), [cos | sin], Linear, SiLU, Linear; t as given."""
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
    args = t.float()[:, None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return linear(F.silu(linear(emb, sd, name + ".mlp.0")), sd, name + ".mlp.2")


def timestep_fno(t, sd):
    """grid linspace(-1, 1, 32) + t -> fc0 -> 3 x (SpectralConv + 1x1 conv), exact GELU after the
    first two -> mean over the grid -> fc1. Spectral: rfft, bins 0..15 mixed, bin 16 zero, irfft."""
    grid = torch.linspace(-1, 1, 32)[None] + t[:, None]  # (B, 32)
    h = linear(grid[..., None], sd, "t_embedder.fc0").transpose(1, 2)  # (B, width, 32), channels first
    for k in range(3):
        spectrum = torch.fft.rfft(h, dim=-1)  # (B, in, 17)
        weight = torch.complex(sd[f"t_embedder.conv{k}.weights_real"], sd[f"t_embedder.conv{k}.weights_imag"])
        mixed = torch.zeros(h.shape[0], weight.shape[1], 17, dtype=torch.complex64)
        mixed[..., :16] = torch.einsum("bim,iom->bom", spectrum[..., :16], weight)
        spectral = torch.fft.irfft(mixed, n=32, dim=-1)
        local = torch.einsum("oi,bin->bon", sd[f"t_embedder.w{k}.weight"][..., 0], h) + \
            sd[f"t_embedder.w{k}.bias"][:, None]
        h = spectral + local
        if k < 2:
            h = F.gelu(h)
    return linear(h.mean(dim=-1), sd, "t_embedder.fc1")


def block(x, sd, name, six, heads):
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = [v[:, None] for v in six]
    B, L, D = x.shape
    h = layer_norm(x) * (1 + scale_a) + shift_a
    qkv = linear(h, sd, name + ".attn.qkv")  # q = cols 0..D-1, k = D..2D-1, v = 2D..3D-1
    q, k, v = [qkv[..., i * D:(i + 1) * D].reshape(B, L, heads, D // heads).transpose(1, 2) for i in range(3)]
    attn = torch.softmax(q @ k.transpose(-1, -2) * (D // heads) ** -0.5, dim=-1) @ v
    x = x + gate_a * linear(attn.transpose(1, 2).reshape(B, L, D), sd, name + ".attn.proj")
    h = layer_norm(x) * (1 + scale_m) + shift_m
    return x + gate_m * linear(gelu_tanh(linear(h, sd, name + ".mlp.fc1")), sd, name + ".mlp.fc2")


def unpatchify(out, p, channels, H, W):
    """Channel (i*p + j)*C + c of token (h, w) -> pixel (c, h*p + i, w*p + j)."""
    B = out.shape[0]
    out = out.reshape(B, H // p, W // p, p, p, channels)  # (b, h, w, i, j, c)
    return out.permute(0, 5, 1, 3, 2, 4).reshape(B, channels, H, W)


def dit_forward(sd, x, t, y, heads, learn_sigma=True, sit=False):
    """facebookresearch/DiT's forward (sit=True: SiT's, which drops the sigma channels)."""
    B, C, H, W = x.shape
    p = sd["x_embedder.proj.weight"].shape[-1]
    depth = len({key.split(".")[1] for key in sd if key.startswith("blocks.")})
    tokens = patch_embed(x, sd, "x_embedder") + sd["pos_embed"]
    c = timestep_mlp(t, sd, "t_embedder") + sd["y_embedder.embedding_table.weight"][y]
    for i in range(depth):
        six = linear(F.silu(c), sd, f"blocks.{i}.adaLN_modulation.1").chunk(6, dim=1)
        tokens = block(tokens, sd, f"blocks.{i}", six, heads)
    shift, scale = linear(F.silu(c), sd, "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    out = linear(layer_norm(tokens) * (1 + scale[:, None]) + shift[:, None], sd, "final_layer.linear")
    out = unpatchify(out, p, 2 * C if learn_sigma else C, H, W)
    return out[:, :C] if sit else out


def upsampler(tokens, sd, name, m):
    """proj -> channel d*4 + i*2 + j to fine cell (2h+i, 2w+j) -> GELU (tanh) -> class tokens in
    front -> LayerNorm -> refine."""
    cls, image = tokens[:, :m], tokens[:, m:]
    B, L, D = image.shape
    g = int(math.isqrt(L))
    wide = linear(image, sd, name + ".proj").reshape(B, g, g, D, 2, 2)  # (b, h, w, d, i, j)
    fine = gelu_tanh(wide.permute(0, 1, 4, 2, 5, 3).reshape(B, 4 * L, D))  # row 2h+i, column 2w+j
    return linear(layer_norm(torch.cat([cls, fine], dim=1)), sd, name + ".refine")


def mpdit_ref_forward(sd, x, t, y, heads, m=16, levels=2):
    """quandao10/MPDiT's MPDiT (levels=2) or MPDiTv2 (levels=3) forward, fno or mlp time, skip or not."""
    B, C, H, W = x.shape
    D = sd["x_embedder.proj.weight"].shape[0]
    if levels == 2:
        coarse_pos, stage_pos = "pos_embed_downsampled", ["pos_embed"]
        skips = [("x_embedder_skip", "linear_skip")]
        upsamplers, stage_blocks = ["upsampler"], ["downsample_blocks", "upsample_blocks"]
    else:
        coarse_pos, stage_pos = "pos_embed", ["pos_embed_lvl1", "pos_embed_lvl2"]
        skips = [("x_embedder_lvl1", "linear_skip_lvl1"), ("x_embedder_lvl2", "linear_skip_lvl2")]
        upsamplers = ["upsampler_lvl1", "upsampler_lvl2"]
        stage_blocks = ["downsample_blocks", "upsample_blocks_lvl1", "upsample_blocks_lvl2"]
    tokens = patch_embed(x, sd, "x_embedder") + sd[coarse_pos]
    tokens = torch.cat([sd["y_embedder.embedding_table.weight"][y].reshape(B, m, D), tokens], dim=1)
    t_emb = timestep_fno(t, sd) if "t_embedder.fc0.weight" in sd else timestep_mlp(t, sd, "t_embedder")
    six = linear(F.silu(t_emb), sd, "time_modulation.1").chunk(6, dim=1)
    for stage, blocks in enumerate(stage_blocks):
        if stage:
            tokens = upsampler(tokens, sd, upsamplers[stage - 1], m)
            image = tokens[:, m:]
            embed, project = skips[stage - 1]
            if embed + ".proj.weight" in sd:
                image = image + linear(patch_embed(x, sd, embed), sd, project)
            tokens = torch.cat([tokens[:, :m], image + sd[stage_pos[stage - 1]]], dim=1)
        depth = len({key.split(".")[1] for key in sd if key.startswith(blocks + ".")})
        for i in range(depth):
            tokens = block(tokens, sd, f"{blocks}.{i}", six, heads)
    shift, scale = six[3], six[4]
    out = linear(layer_norm(tokens[:, m:]) * (1 + scale[:, None]) + shift[:, None], sd, "final_layer.linear")
    return unpatchify(out, 2, out.shape[-1] // 4, H, W)


def forward_with_cfg(forward, x, t, y, cfg_scale, guided):
    """The official guidance: first half of x twice; `guided` channels mixed and written into both
    halves; the other channels keep each half's own output."""
    half = x[: len(x) // 2]
    out = forward(torch.cat([half, half]), t, y)
    eps, rest = out[:, :guided], out[:, guided:]
    cond, uncond = eps.chunk(2)
    mixed = uncond + cfg_scale * (cond - uncond)
    return torch.cat([torch.cat([mixed, mixed]), rest], dim=1)
