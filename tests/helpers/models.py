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


def twin_models(name, device, backend, **overrides):
    """The same randomised weights on the torch backend and on `backend`."""
    torch_model = randomize_(tiny_model(name, **overrides), std=0.05).to(device)
    fused_model = tiny_model(name, **overrides).to(device)
    fused_model.load_state_dict(torch_model.state_dict())
    fused_model.kernel_backend = backend
    return torch_model, fused_model


def assert_same_function(torch_model, fused_model, x, t, y):
    """Same output and the same gradient for every trainable parameter."""
    out_torch, out_fused = torch_model(x, t, y), fused_model(x, t, y)
    torch.testing.assert_close(out_fused, out_torch, rtol=1e-4, atol=1e-5)
    grad_out = torch.randn_like(out_torch)
    (out_torch * grad_out).sum().backward()
    (out_fused * grad_out).sum().backward()
    for (name, p_torch), p_fused in zip(torch_model.named_parameters(), fused_model.parameters()):
        if p_torch.requires_grad:
            assert p_fused.grad is not None, name
            torch.testing.assert_close(p_fused.grad, p_torch.grad, rtol=1e-4, atol=1e-5, msg=name)


def official_state(factory, std=0.05, **kwargs):
    """Random values in an official model's layout; the shapes come from the module itself."""
    with torch.device("meta"):
        shapes = {key: t.shape for key, t in factory(**kwargs).state_dict().items()}
    return {key: torch.randn(shape) * std for key, shape in shapes.items()}


def tiny_vae(path):
    """A small randomly initialised AutoencoderKL saved locally: nothing is downloaded."""
    from diffusers.models import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(str(path))
    return str(path)


def allow_float8(monkeypatch, device):
    """float8 on `device`: natively on an sm_89+ GPU, on a CPU through torch's CPU _scaled_mm (float8.ALLOW_CPU)."""
    import pytest

    from mpdit.models import float8

    pytest.importorskip("torchao.float8")
    if device == "cpu":
        monkeypatch.setattr(float8, "ALLOW_CPU", True)
    elif float8.float8_unavailable_reason(device):
        pytest.skip(float8.float8_unavailable_reason(device))
