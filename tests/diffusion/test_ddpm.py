"""DDPM ancestral sampling (DiT's eps models) on a closed-form Gaussian case.

For data x0 ~ N(mu, s^2) every reverse conditional q(x_{t-1} | x_t) is Gaussian: mean
c0 E[x0 | x_t] + ct x_t and variance posterior_var + c0^2 Var(x0 | x_t) (Ho et al. 2020, eq. 7).
A network that returns the exact eps and the learned-range v that gives exactly that variance
makes the sampler exact at ANY number of respaced steps, so the samples' moments must be the
data's. The schedule is re-derived here from the published formulas, not taken from the sampler.
"""
import math

import pytest
import torch

from mpdit.diffusion.ddpm import DDPMSchedule, ddpm_sample, respaced_steps
from mpdit.models.transformer import ModelConfig

MU, S = 0.5, 0.7


def alpha_bars(num_steps=1000):
    betas = torch.linspace(1e-4, 0.02, num_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


class GaussianEps(torch.nn.Module):
    """The exact eps of N(MU, S^2) data and the v of the exact reverse variance, on `steps` kept steps."""

    def __init__(self, steps, learned_variance=True):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = ModelConfig(hidden_size=4, num_heads=1, latent_size=8, in_channels=4, num_classes=10)
        full = alpha_bars()
        kept = [round(i * 999 / (steps - 1)) for i in range(steps)]
        self.index = {t: i for i, t in enumerate(kept)}
        self.a = full[kept]
        self.a_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.a[:-1]])
        self.learned_variance = learned_variance
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append((x.shape[0], t[0].item(), y.tolist()))
        i = self.index[int(t[0])]
        a, a_prev = self.a[i].item(), self.a_prev[i].item()
        eps = math.sqrt(1 - a) * (x - math.sqrt(a) * MU) / (a * S ** 2 + 1 - a)
        if not self.learned_variance:
            return eps
        beta = 1 - a / a_prev
        posterior = beta * (1 - a_prev) / (1 - a)
        c0 = beta * math.sqrt(a_prev) / (1 - a)
        exact = posterior + c0 ** 2 * S ** 2 * (1 - a) / (a * S ** 2 + 1 - a)
        if i == 0:  # no noise is added at the last step: any v
            return torch.cat([eps, torch.zeros_like(x)], dim=1)
        low = math.log(posterior)
        frac = (math.log(exact) - low) / (math.log(beta) - low)
        return torch.cat([eps, torch.full_like(x, 2 * frac - 1)], dim=1)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        return self.forward(x, t, y)


@pytest.mark.parametrize("steps", [250, 50, 10])
def test_learned_range_variance_samples_the_gaussian_exactly(steps):
    model = GaussianEps(steps)
    x = ddpm_sample(model, torch.zeros(4000, dtype=torch.long), steps=steps,
                    generator=torch.Generator().manual_seed(0))
    assert x.shape == (4000, 4, 8, 8) and len(model.calls) == steps
    # 1M values: the standard errors are ~7e-4 (mean) and ~5e-4 (std)
    assert abs(x.mean().item() - MU) < 4e-3
    assert abs(x.std().item() - S) < 4e-3


def test_fixed_variance_without_learn_sigma_converges_on_all_steps():
    model = GaussianEps(1000, learned_variance=False)
    x = ddpm_sample(model, torch.zeros(500, dtype=torch.long), steps=1000, generator=torch.Generator().manual_seed(1))
    assert abs(x.mean().item() - MU) < 1e-2 and abs(x.std().item() - S) < 1e-2


def test_network_sees_the_original_step_indices_noisiest_first():
    model, reported = GaussianEps(250), []
    ddpm_sample(model, torch.tensor([3, 4]), steps=250, generator=torch.Generator().manual_seed(0),
                on_evaluation=lambda: reported.append(len(model.calls)))
    assert reported == list(range(1, 251))  # after each call (the progress of `mpdit sample`)
    seen = [t for _, t, _ in model.calls]
    assert seen == sorted(seen, reverse=True) and seen[0] == 999 and seen[-1] == 0
    assert seen[::-1] == respaced_steps(1000, 250)


def test_guidance_runs_the_doubled_batch_with_null_labels():
    model = GaussianEps(10)
    ddpm_sample(model, torch.tensor([3, 4]), steps=10, cfg_scale=4.0, generator=torch.Generator().manual_seed(0))
    assert all(batch == 4 and labels == [3, 4, 10, 10] for batch, _, labels in model.calls)


def test_respaced_schedule_keeps_alpha_bar_at_the_kept_steps():
    schedule = DDPMSchedule(250)
    full = alpha_bars()
    assert schedule.timesteps[0] == 0 and schedule.timesteps[-1] == 999 and len(set(schedule.timesteps)) == 250
    product = torch.cumprod(1 - torch.tensor(schedule.betas, dtype=torch.float64), 0)
    torch.testing.assert_close(product, full[schedule.timesteps], rtol=1e-12, atol=0)


def test_bad_step_count_is_named():
    with pytest.raises(ValueError, match=r"steps=0: expected an integer in \[1, 1000\]"):
        DDPMSchedule(0)
