"""Small models for the tests: registered configs at reduced width, with randomised weights."""
from dataclasses import replace

import torch

from mpdit import MultiPatchTransformer, get_config


def tiny_model(name: str = "MPDiT-S", width: int = 64, heads: int = 4, **overrides) -> MultiPatchTransformer:
    """The registered network `name` with its depth and schedule but a small width."""
    config = replace(get_config(name, **overrides), hidden_size=width, num_heads=heads)
    return MultiPatchTransformer(config)


@torch.no_grad()
def randomize_(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Random trainable weights: zero-initialised layers would hide wiring errors."""
    for param in model.parameters():
        if param.requires_grad:
            param.normal_(0.0, std)
    return model


def random_inputs(model: MultiPatchTransformer, batch: int = 2, size: int = None):
    cfg = model.config
    size = size or cfg.latent_size
    x = torch.randn(batch, cfg.in_channels, size, size)
    t = torch.rand(batch)
    y = torch.randint(0, cfg.num_classes + 1, (batch,))
    return x, t, y
