"""FP8 training of the transformer blocks' matrix products through torchao (an optional extra).

Only each block's qkv, proj, fc1 and fc2 run in float8 (torchao's tensorwise dynamic
scaling, e4m3 forward and backward); the embedders, the adaLN projections, the upsamplers
and the final layer stay in bf16 autocast. torchao's casts are fused by torch.compile:
without it float8 costs more than it saves, so the bench's fp8 provider compiles.
"""
import importlib.util

import torch
import torch.nn as nn

BLOCK_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
INSTALL = "pip install -e '.[fp8]' (torchao)"
# torch's CPU _scaled_mm rounds to e4m3 / e5m2 and accumulates in fp32 as the GPU's does, only slowly:
# set by the tests and by benchmarks/fp8_quality.py --float8-on-cpu to check float8's numerics on a CPU
ALLOW_CPU = False


def is_block_linear(module: nn.Module, name: str) -> bool:
    """A transformer block's qkv / proj / fc1 / fc2 (`blocks.<i>.<...>`), nothing else."""
    return isinstance(module, nn.Linear) and name.startswith("blocks.") and name.endswith(BLOCK_LINEARS)


def float8_unavailable_reason(device) -> str | None:
    """Why float8 training cannot run on `device`, or None."""
    device = torch.device(device)
    if importlib.util.find_spec("torchao") is None:  # found without importing it (its import is noisy)
        return f"needs torchao: {INSTALL}"
    if device.type == "cpu" and ALLOW_CPU:
        return None
    if device.type != "cuda":
        return f"needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); got device {device}"
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        return (f"needs a GPU of compute capability 8.9 or newer (Ada, Hopper); {torch.cuda.get_device_name(device)} "
                f"has {capability[0]}.{capability[1]}")
    return None


def convert_blocks_to_float8(model: nn.Module, device) -> nn.Module:
    """Swap the blocks' linear layers for torchao's Float8Linear, in place (weights kept).
    ValueError, naming what is missing, where float8 cannot run."""
    reason = float8_unavailable_reason(device)
    if reason:
        raise ValueError(f"precision='fp8' {reason}")
    from torchao.float8 import convert_to_float8_training

    return convert_to_float8_training(model, module_filter_fn=is_block_linear)
