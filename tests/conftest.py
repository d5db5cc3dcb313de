import os

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
    """Kernel outputs start as NaN, so an element a kernel fails to write fails the test."""
    import mpdit_kernels.adaln
    import mpdit_kernels.fno
    import mpdit_kernels.upsample

    for module in (mpdit_kernels.adaln, mpdit_kernels.fno, mpdit_kernels.upsample):
        monkeypatch.setattr(module, "torch", _PoisonedTorch())
