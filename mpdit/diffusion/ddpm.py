"""DDPM ancestral sampling for DiT's epsilon models, on respaced steps, with the learned-range variance.

DiT (Peebles & Xie 2023) trains eps-prediction on 1000 steps of a linear beta schedule (1e-4 to
0.02; larger t noisier) and learns the reverse variance as an interpolation v in [-1, 1] between
log beta_t and the log of the clipped posterior variance (Nichol & Dhariwal 2021, eq. 15). The
sampler walks a respaced subset of the steps (N&D sec. 4: the kept steps' alpha-bar define new
betas) and feeds the network the ORIGINAL step indices, as DiT's respacing does. Formulas from
Ho et al. 2020 (eqs. 6, 7, 11) and N&D 2021; the schedule is float64 host numbers, so the loop
never syncs the device.
"""
import math

import torch

from mpdit.diffusion.guidance import check_guidance


def linear_betas(num_steps: int = 1000) -> list:
    """DiT's linear schedule, scaled so that other step counts keep the same total noise."""
    scale = 1000 / num_steps
    start, end = scale * 1e-4, scale * 0.02
    return [start + (end - start) * i / (num_steps - 1) for i in range(num_steps)]


def respaced_steps(num_steps: int, count: int) -> list:
    """`count` evenly spaced step indices from 0 to num_steps - 1, rounded (N&D's space_timesteps
    with one section: DiT's "250")."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= num_steps:
        raise ValueError(f"steps={count!r}: expected an integer in [1, {num_steps}]")
    if count == 1:
        return [0]
    stride, position, steps = (num_steps - 1) / (count - 1), 0.0, []
    for _ in range(count):  # accumulated, as the published code does, so the rounding matches it
        steps.append(round(position))
        position += stride
    return steps


class DDPMSchedule:
    """The respaced process: for each kept step i, its original index and the posterior
    q(x_{i-1} | x_i, x_0) of the new betas (float64 host numbers)."""

    def __init__(self, steps: int, num_train_steps: int = 1000):
        base = linear_betas(num_train_steps)
        alpha_bar, cumulative = [], 1.0
        for beta in base:
            cumulative *= 1.0 - beta
            alpha_bar.append(cumulative)
        self.timesteps = respaced_steps(num_train_steps, steps)
        self.alpha_bar = [alpha_bar[t] for t in self.timesteps]
        previous = [1.0] + self.alpha_bar[:-1]
        self.betas = [1.0 - a / p for a, p in zip(self.alpha_bar, previous)]
        self.posterior_variance = [b * (1 - p) / (1 - a) for b, a, p in zip(self.betas, self.alpha_bar, previous)]
        # log of the posterior variance, its 0 at the first step replaced by the next one's (N&D's clip)
        clipped = [self.posterior_variance[1] if len(self.betas) > 1 else self.betas[0]] + self.posterior_variance[1:]
        self.posterior_log_variance = [math.log(v) for v in clipped]
        self.mean_coef_x0 = [b * math.sqrt(p) / (1 - a) for b, a, p in zip(self.betas, self.alpha_bar, previous)]
        self.mean_coef_xt = [(1 - p) * math.sqrt(1 - b) / (1 - a)
                             for b, a, p in zip(self.betas, self.alpha_bar, previous)]

    def step(self, model_output: torch.Tensor, x: torch.Tensor, i: int, noise: torch.Tensor) -> torch.Tensor:
        """x_{i-1} from x_i and the network's output at kept step i: eps (C channels), then, with
        2C channels, the variance interpolation v (learned range); with C channels the fixed
        variance DiT uses without learn_sigma (beta, the first step's posterior variance at 0)."""
        C = x.shape[1]
        eps = model_output[:, :C].float()
        if model_output.shape[1] == 2 * C:
            frac = (model_output[:, C:].float() + 1) / 2
            log_variance = frac * math.log(self.betas[i]) + (1 - frac) * self.posterior_log_variance[i]
        else:
            large = self.posterior_variance[1] if i == 0 and len(self.betas) > 1 else self.betas[i]
            log_variance = torch.full_like(eps, math.log(large))
        a = self.alpha_bar[i]
        x0 = math.sqrt(1 / a) * x.float() - math.sqrt(1 / a - 1) * eps  # Ho et al. eq. 15
        mean = self.mean_coef_x0[i] * x0 + self.mean_coef_xt[i] * x.float()  # eq. 7
        if i == 0:  # the last step adds no noise
            return mean.to(x.dtype)
        return (mean + torch.exp(0.5 * log_variance) * noise.float()).to(x.dtype)


@torch.no_grad()
def ddpm_sample(model, y, *, steps: int = 250, cfg_scale: float = 1.0, noise: torch.Tensor = None,
                generator: torch.Generator = None, num_train_steps: int = 1000, null_class: int = None,
                on_evaluation=None):
    """Latents for labels y from a DiT-layout eps model (mpdit.compat.DiT: forward(x, t, y) with t
    the original integer step, forward_with_cfg for guidance), by ancestral sampling over `steps`
    respaced steps (DiT's default 250). cfg_scale > 1 guides as DiT's sample.py: the doubled
    batch through forward_with_cfg, labels [y ; null], the first half kept. on_evaluation(): called
    after each model call (a progress bar)."""
    check_guidance(cfg_scale)
    param = next(model.parameters())
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y, dtype=torch.long, device=param.device)
    cfg = model.config
    shape = (y.shape[0], cfg.in_channels, cfg.latent_size, cfg.latent_size)
    if noise is None:
        noise = torch.randn(shape, device=param.device, dtype=param.dtype, generator=generator)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise: expected shape {shape}, got {tuple(noise.shape)}")
    schedule = DDPMSchedule(steps, num_train_steps)
    guided = cfg_scale > 1.0
    x = torch.cat([noise, noise]) if guided else noise
    if guided:
        null = cfg.num_classes if null_class is None else null_class
        y = torch.cat([y, torch.full_like(y, null)])
    for i in reversed(range(steps)):
        t = torch.full((x.shape[0],), schedule.timesteps[i], dtype=torch.long, device=x.device)
        out = model.forward_with_cfg(x, t, y, cfg_scale) if guided else model(x, t, y)
        fresh = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        x = schedule.step(out, x, i, fresh)
        if on_evaluation is not None:
            on_evaluation()
    return x[: noise.shape[0]]
