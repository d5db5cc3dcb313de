"""Flow-matching objective, time samplers, class dropout, and an overfit run."""
from dataclasses import replace

import pytest
import torch

from mpdit import MultiPatchTransformer, get_config
from mpdit.diffusion.flow import drop_labels, flow_matching_loss, interpolate, sample_time, velocity_target


def test_interpolant_runs_from_data_to_noise_with_constant_velocity():
    z, n = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([0.0, 0.25, 1.0])
    z_t = interpolate(z, n, t)
    torch.testing.assert_close(z_t[0], z[0])
    torch.testing.assert_close(z_t[2], n[2])
    torch.testing.assert_close(z_t[1], 0.75 * z[1] + 0.25 * n[1])
    # d z_t / d t by finite difference equals the target n - z
    dt = 1e-3
    torch.testing.assert_close((interpolate(z, n, t + dt) - z_t) / dt, velocity_target(z, n), rtol=1e-3, atol=1e-3)


def test_uniform_and_logit_normal_time_samplers():
    g = torch.Generator().manual_seed(0)
    uniform = sample_time(100_000, "uniform", generator=g)
    assert 0 <= uniform.min() and uniform.max() <= 1
    assert uniform.mean().item() == pytest.approx(0.5, abs=0.01)
    shifted = sample_time(100_000, "logit_normal", mean=-0.4, std=1.0, generator=g)
    logits = torch.logit(shifted.double())
    assert logits.mean().item() == pytest.approx(-0.4, abs=0.02)
    assert logits.std().item() == pytest.approx(1.0, abs=0.02)


def test_class_dropout_replaces_the_requested_fraction_with_the_null_class():
    y = torch.randint(0, 10, (100_000,))
    dropped = drop_labels(y, 0.1, null_class=10, generator=torch.Generator().manual_seed(0))
    changed = dropped != y
    assert (dropped[changed] == 10).all()
    assert changed.float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert drop_labels(y, 0.0, 10) is y


@pytest.mark.parametrize("call, argument", [
    (lambda: sample_time(4, "cosine"), "kind"),
    (lambda: sample_time(4, "logit_normal", std=0.0), "std"),
    (lambda: drop_labels(torch.tensor([1]), 1.5, 10), "prob"),
])
def test_bad_flow_arguments(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_loss_is_the_mse_to_the_velocity_target():
    """With a model that returns the exact target, the loss is zero; with zero output it is E|n - z|^2."""
    class Oracle(torch.nn.Module):
        config = get_config("MPDiT-S")

        def forward(self, x, t, y):
            return self.target

    oracle = Oracle()
    z = torch.randn(2, 4, 8, 8)
    g = torch.Generator().manual_seed(3)
    t = sample_time(2, generator=g)
    n = torch.randn(z.shape, generator=g)
    oracle.target = n - z
    loss = flow_matching_loss(oracle, z, torch.tensor([1, 2]), class_dropout=0.0,
                              generator=torch.Generator().manual_seed(3))
    assert t.shape == (2,) and loss.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_tiny_mpdit_overfits_a_handful_of_latents():
    """Loss falls at least 10x in 300 CPU steps on 4 fixed latents, fresh noise and times each step."""
    config = replace(get_config("MPDiT-S", latent_size=8, num_classes=4, stages=[(4, 2), (2, 2)]),
                     hidden_size=64, num_heads=4)
    model = MultiPatchTransformer(config)
    latents, labels = torch.randn(4, 4, 8, 8).repeat(8, 1, 1, 1), torch.arange(4).repeat(8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(300):
        loss = flow_matching_loss(model, latents, labels, class_dropout=0.0, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert last < first / 10, (first, last)
