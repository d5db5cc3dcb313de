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
