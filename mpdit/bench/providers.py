"""What a bench provider is: a kernel backend from mpdit_kernels' table, optionally compiled.

    torch             eager PyTorch (the references)
    compile           torch.compile of the torch backend
    triton            the Triton kernels           triton+compile: and torch.compile around them
    native            the C++/CUDA extension (its C++ loops on a CPU)
"""
import torch

from mpdit_kernels import BACKENDS

PROVIDERS = ("torch", "compile", "triton", "triton+compile", "native")


def split(provider: str) -> tuple:
    """(backend name, compiled) of a provider."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider={provider!r}: expected one of {', '.join(PROVIDERS)}")
    if provider == "compile":
        return "torch", True
    name, _, compiled = provider.partition("+")
    return name, bool(compiled)


def unavailable_reason(provider: str, device: str):
    """Why `provider` cannot run on `device`, or None: the backend table decides. On a CPU only
    Triton's interpreter runs, which is no speed figure: kept only when TRITON_INTERPRET=1 (tests)."""
    return BACKENDS[split(provider)[0]].unavailable_reason(torch.device(device), None)


def on_backend(provider: str, op):
    """`op` (from mpdit_kernels.ops) as `provider` runs it."""
    name, compiled = split(provider)
    backend = BACKENDS[name]
    run = lambda *args: op(*args, backend=backend)
    return torch.compile(run) if compiled else run
