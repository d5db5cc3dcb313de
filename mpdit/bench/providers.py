"""What a bench provider is: a kernel backend from mpdit_kernels' table (torch, triton, native),
optionally compiled (+compile; +autotune: torch.compile's max-autotune-no-cudagraphs, GPU only),
optionally with the blocks' linear layers in float8 (+fp8, torchao). docs/bench.md has the table."""
from typing import NamedTuple, Optional

import torch

from mpdit.models.float8 import float8_unavailable_reason
from mpdit.training.config import AUTOTUNE_ON_CPU, COMPILE_MODES
from mpdit_kernels import BACKENDS

PROVIDERS = ("torch", "compile", "triton", "triton+compile", "native", "compile+fp8", "triton+compile+fp8",
             "compile+autotune", "triton+compile+autotune")
AUTOTUNE_MODE = COMPILE_MODES[1]  # max-autotune without CUDA-graph trees: the training step's graphs stay plain


class Provider(NamedTuple):
    backend: str
    compile_mode: Optional[str]  # torch.compile's mode; None = eager
    float8: bool

    @property
    def compiled(self) -> bool:
        return self.compile_mode is not None


def split(provider: str) -> Provider:
    """(backend name, compile mode or None, float8) of a provider."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider={provider!r}: expected one of {', '.join(PROVIDERS)}")
    parts = provider.split("+")
    backend, modifiers = ("torch", parts) if parts[0] == "compile" else (parts[0], parts[1:])
    mode = (AUTOTUNE_MODE if "autotune" in modifiers else "default") if "compile" in modifiers else None
    return Provider(backend, mode, "fp8" in modifiers)


def unavailable_reason(provider: str, device: str):
    """Why `provider` cannot run on `device`, or None: the backend table decides (and torchao for
    fp8). On a CPU only Triton's interpreter runs, which is no speed figure: kept only when
    TRITON_INTERPRET=1 (tests)."""
    parts = split(provider)
    reason = BACKENDS[parts.backend].unavailable_reason(torch.device(device), None)
    if reason is None and parts.compile_mode == AUTOTUNE_MODE and device != "cuda":
        reason = AUTOTUNE_ON_CPU
    if reason is None and parts.float8:
        reason = float8_unavailable_reason(device)
    return reason


def on_backend(provider: str, op):
    """`op` (from mpdit_kernels.ops) as `provider` runs it."""
    parts = split(provider)
    backend = BACKENDS[parts.backend]
    run = lambda *args: op(*args, backend=backend)
    return torch.compile(run, mode=parts.compile_mode) if parts.compiled else run
