import os
from typing import NamedTuple

import pytest
import torch

# Without a GPU the Triton kernels run through Triton's interpreter; it must be switched on
# before any kernel module is imported (Triton decides at decoration time).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def seed():
    """Every test draws its own reproducible random inputs."""
    torch.manual_seed(0)


@pytest.fixture
def device():
    """Where kernel tests run: the GPU when there is one, else the CPU through the interpreter."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class _PoisonedTorch:
    """The torch module, except that fresh floating-point buffers come filled with NaN."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def _poison(tensor):
        return tensor.fill_(float("nan")) if tensor.is_floating_point() else tensor

    def empty(self, *args, **kwargs):
        return self._poison(torch.empty(*args, **kwargs))

    def empty_like(self, *args, **kwargs):
        return self._poison(torch.empty_like(*args, **kwargs))


@pytest.fixture
def poisoned(monkeypatch):
    """Kernel outputs start as NaN, so an element a kernel fails to write fails the test: the
    Triton launchers get a torch whose empty() fills with NaN; the native ops allocate with
    at::empty, which deterministic mode fills with NaN."""
    import mpdit_kernels.triton.adaln
    import mpdit_kernels.triton.fno
    import mpdit_kernels.triton.upsample

    for module in (mpdit_kernels.triton.adaln, mpdit_kernels.triton.fno, mpdit_kernels.triton.upsample):
        monkeypatch.setattr(module, "torch", _PoisonedTorch())
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


class Fused(NamedTuple):
    backend: object  # mpdit_kernels.backend.Backend
    device: str


def _fused_cases():
    """(backend, device) pairs under test: Triton on the GPU (else interpreted on the CPU); the
    native extension's C++ loops on the CPU and, with a GPU, its CUDA kernels."""
    gpu = torch.cuda.is_available()
    return [("triton", "cuda" if gpu else "cpu"), ("native", "cpu")] + ([("native", "cuda")] if gpu else [])


def _backend_on(case) -> Fused:
    """The (backend name, device) case from the table. Skipped only where it cannot exist (Triton
    not installed; the extension deliberately not built): a build that failed silently makes
    get_backend raise, a failure rather than a skip."""
    from mpdit_kernels.backend import get_backend
    from mpdit_kernels.triton import runtime

    name, device = case
    if name == "triton" and not runtime.AVAILABLE:
        pytest.skip("Triton is not installed")
    if name == "native" and os.environ.get("MPDIT_NATIVE_BUILD") == "0":
        pytest.skip("MPDIT_NATIVE_BUILD=0: the extension was deliberately not built")
    return Fused(get_backend(name), device)


@pytest.fixture(params=_fused_cases(), ids=lambda case: "-".join(case))
def fused(request):
    """A fused backend from the table and the device it runs on."""
    return _backend_on(request.param)


@pytest.fixture(params=_fused_cases() + [("torch", "cpu"), ("auto", "cpu")], ids=lambda case: "-".join(case))
def every_backend(request):
    """Every backend of the table with a device, the reference (torch) and auto included: what
    all of them must refuse alike (bad inputs)."""
    return _backend_on(request.param)
