"""What a bench provider is: a kernel backend from mpdit_kernels' table, optionally compiled,
optionally with float8 matrix products.

    torch               eager PyTorch (the references)
    compile             torch.compile of the torch backend: what every user gets for free
    triton              the Triton kernels           triton+compile: and torch.compile around them
    triton+compile+fp8  and the blocks' linear layers in float8 (torchao; mpdit.models.float8)
    native              the C++/CUDA extension (its C++ loops on a CPU)
"""
from typing import NamedTuple

import torch

from mpdit_kernels import BACKENDS

PROVIDERS = ("torch", "compile", "triton", "triton+compile", "native", "triton+compile+fp8")


class Provider(NamedTuple):
    backend: str
    compiled: bool
    float8: bool


def split(provider: str) -> Provider:
    """(backend name, compiled, float8) of a provider."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider={provider!r}: expected one of {', '.join(PROVIDERS)}")
    if provider == "compile":
        return Provider("torch", True, False)
    name, *modifiers = provider.split("+")
    return Provider(name, "compile" in modifiers, "fp8" in modifiers)


def unavailable_reason(provider: str, device: str):
    """Why `provider` cannot run on `device`, or None: the backend table decides (and torchao for
    fp8). On a CPU only Triton's interpreter runs, which is no speed figure: kept only when
    TRITON_INTERPRET=1 (tests)."""
    parts = split(provider)
    reason = BACKENDS[parts.backend].unavailable_reason(torch.device(device), None)
    if reason is None and parts.float8:
        from mpdit.models.float8 import float8_unavailable_reason

        reason = float8_unavailable_reason(device)
    return reason


def on_backend(provider: str, op):
    """`op` (from mpdit_kernels.ops) as `provider` runs it."""
    parts = split(provider)
    backend = BACKENDS[parts.backend]
    run = lambda *args: op(*args, backend=backend)
    return torch.compile(run) if parts.compiled else run
