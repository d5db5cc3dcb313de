"""Which attention path runs the models' attention fastest (forward + backward): SDPA's backends, the libraries.

At each distinct (tokens, heads, head width) of the models under test (MPDiT-XL: 80 coarse
and 272 fine tokens at width 72): SDPA as it chooses by itself, then each fused backend
forced through torch.nn.attention.sdpa_kernel; a backend that refuses the shape is skipped.
Then each installed library the engine would call instead (flash_attn, xformers), through the
engine's own call; one that fails to load or refuses the inputs is named on stderr and skipped.
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from mpdit.bench.results import Shape, dtype_name
from mpdit.bench.timing import time_call
from mpdit.models.registry import get_config
from mpdit_kernels.attention import fused_paths, library_attention, sdpa_choice

FORCED = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
          "efficient": SDPBackend.EFFICIENT_ATTENTION}


def attention_shapes(specs) -> list:
    """Distinct (tokens, heads, head width) over every stage of every model spec."""
    shapes = []
    for spec in specs:
        config = get_config(spec.name, **spec.overrides)
        for patch, _ in config.stages:
            shape = (config.class_tokens + (config.latent_size // patch) ** 2, config.num_heads,
                     config.hidden_size // config.num_heads)
            if shape not in shapes:
                shapes.append(shape)
    return shapes


def bench_attention(plan, case, results, ceilings=None) -> None:
    """Forward + backward at each attention shape of the plan's models, at the training batch."""
    batch, dtype, device = plan.preset.train_batch, plan.dtype, plan.device
    for tokens, heads, width in attention_shapes(plan.specs):
        q, k, v = (torch.randn(batch, heads, tokens, width, device=device, dtype=dtype, requires_grad=True)
                   for _ in range(3))
        grad = torch.randn(batch, heads, tokens, width, device=device, dtype=dtype)
        step = lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v), (q, k, v), grad)
        case = f"attention L={tokens} heads={heads} hd={width}"  # the attention's shape; the Shape: batch, dtype
        x = Shape(batch=batch, dtype=dtype_name(dtype))
        results.add(case, f"sdpa default ({sdpa_choice(q, k, v)})", "attention", "fwd_bwd_ms", "ms", x,
                    time_call(step, device)["median_ms"])
        for name, backend in FORCED.items():
            try:
                with sdpa_kernel([backend]):
                    ms = time_call(step, device)["median_ms"]
            except RuntimeError:  # this backend does not take the shape / dtype / device
                continue
            results.add(case, f"sdpa-{name}", "attention", "fwd_bwd_ms", "ms", x, ms)
        for path in fused_paths(q):
            library_step = lambda: torch.autograd.grad(library_attention(path, q, k, v), (q, k, v), grad)
            try:
                ms = time_call(library_step, device)["median_ms"]
            except (ImportError, OSError, RuntimeError) as error:  # a wheel built for another torch; no kernel
                message = str(error).strip().splitlines() or [type(error).__name__]
                print(f"{case}: {path} skipped: {message[0]}", file=sys.stderr)
                continue
            results.add(case, path, "attention", "fwd_bwd_ms", "ms", x, ms)
