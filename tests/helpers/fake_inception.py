"""A cheap stand-in for the Inception network: the same outputs, computed from the image content."""
import torch


class FakeInception(torch.nn.Module):
    """A cheap stand-in with the real network's outputs (features of the image content)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.pool = torch.randn(3 * 16, 2048, generator=g)
        self.spatial = torch.randn(3 * 16, 2023, generator=g)
        self.fc = torch.randn(2048, 1008, generator=g) / 40
        self.has_logits, self.weight_kind = True, "torch-fidelity"

    def forward(self, images):
        x = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)
        pool = torch.tanh(x @ self.pool)
        return {"pool": pool, "spatial": torch.tanh(x @ self.spatial), "logits": pool @ self.fc}
