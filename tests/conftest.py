import pytest
import torch


@pytest.fixture(autouse=True)
def seed():
    """Every test draws its own reproducible random inputs."""
    torch.manual_seed(0)
