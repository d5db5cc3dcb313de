"""Parameter and FLOP audit, measured on the instantiated model.

Two conventions, both per image and in multiply-accumulates (the "GFLOPs" of DiT-family
papers are MACs):
- exact: every matrix product of one forward pass as torch.utils.flop_counter sees it
  (its FLOPs / 2), attention at the real sequence lengths;
- paper: the same dense MACs, but attention charged 2 * L^2 * D for every block with L
  the image-token count at the finest patch (256 at 256 px), whatever the block's real
  sequence length. This reproduces every GFLOPs figure of the MPDiT paper (docs/model.md,
  "How the paper counts GFLOPs").
"""
from dataclasses import asdict, dataclass

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from mpdit.models import create_model

aten = torch.ops.aten


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# The CPU flash kernel of scaled_dot_product_attention has no formula in torch's registry:
# without these the counter would silently drop attention on CPU.
EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
}
# Inside an attention module, everything but its qkv / proj linears (mm, addmm) is the
# attention core: an SDPA kernel, or the bmm pair of its math path (on the meta device).
LINEAR_OPS = {"aten.mm", "aten.addmm"}


@dataclass
class MacCount:
    total: int
    attention: int

    @property
    def dense(self) -> int:
        return self.total - self.attention


def count_parameters(model: torch.nn.Module) -> int:
    """Every parameter, the frozen position tables included (as DiT's count)."""
    return sum(p.numel() for p in model.parameters())


def _random_inputs(model, batch: int) -> tuple:
    """(x, t, y) for the model, on its device (the meta device included)."""
    cfg = model.config
    device = next(model.parameters()).device
    return (torch.randn(batch, cfg.in_channels, cfg.latent_size, cfg.latent_size, device=device),
            torch.rand(batch, device=device), torch.randint(0, cfg.num_classes, (batch,), device=device))


def _counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, depth=None, custom_mapping=EXTRA_FORMULAS)


def count_forward_macs(model: torch.nn.Module, batch: int = 1) -> MacCount:
    """MACs of one forward pass on random inputs on the model's device, split into attention and the rest."""
    counter = _counter()
    with counter, torch.no_grad():
        model(*_random_inputs(model, batch))
    attention = sum(flops for module, by_op in counter.get_flop_counts().items() if module.endswith(".attn")
                    for op, flops in by_op.items() if str(op) not in LINEAR_OPS)
    return MacCount(total=counter.get_total_flops() // 2, attention=attention // 2)


def count_train_step_flops(model: torch.nn.Module, batch: int = 1) -> int:
    """FLOPs (not MACs) of one forward and backward pass, measured by the counter."""
    counter = _counter()
    with counter:
        model(*_random_inputs(model, batch)).float().square().mean().backward()
    return counter.get_total_flops()


def paper_attention_macs(config) -> int:
    """2 * L^2 * D per block, L = image tokens at the finest patch (the paper's convention)."""
    fine_tokens = (config.latent_size // config.stages[-1][0]) ** 2
    return config.depth * 2 * fine_tokens ** 2 * config.hidden_size


@dataclass
class AuditRow:
    name: str
    params_m: float
    gflops_paper: float
    gflops_exact: float
    attention_gflops_exact: float
    stages: list
    class_tokens: int
    time_embed: str
    shared_adaln: bool
    skip: bool
    latent_size: int


def audit(name: str, device: str = "meta", **overrides) -> AuditRow:
    """Count one model. device="meta" counts shapes without allocating weights (an XL model
    in milliseconds); "cpu" runs the same forward on real tensors and gives the same counts."""
    with torch.device(device):
        model = create_model(name, **overrides)
    macs = count_forward_macs(model)
    cfg = model.config
    return AuditRow(
        name=name, params_m=count_parameters(model) / 1e6,
        gflops_paper=(macs.dense + paper_attention_macs(cfg)) / 1e9, gflops_exact=macs.total / 1e9,
        attention_gflops_exact=macs.attention / 1e9, stages=[list(s) for s in cfg.stages],
        class_tokens=cfg.class_tokens, time_embed=cfg.time_embed, shared_adaln=cfg.shared_adaln,
        skip=cfg.skip, latent_size=cfg.latent_size)


def row_dict(row: AuditRow) -> dict:
    return asdict(row)
