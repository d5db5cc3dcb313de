"""Flow matching (rectified-flow interpolant), time samplers, class dropout and the loss.

Convention throughout: z_t = (1 - t) z + t n with z data and n ~ N(0, I); t = 0 is data,
t = 1 is noise; the network regresses the velocity n - z (docs/model.md, "Training and sampling recipe").
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

TIME_SAMPLERS = ("uniform", "logit_normal")


def interpolate(z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = (1 - t) z + t n, with t (B,) broadcast over the other dimensions."""
    t = t.view(-1, *([1] * (z.dim() - 1))).to(z.dtype)
    return (1 - t) * z + t * noise


def velocity_target(z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """d z_t / d t = n - z."""
    return noise - z


def sample_time(batch: int, kind: str = "logit_normal", mean: float = 0.0, std: float = 1.0,
                device=None, generator: torch.Generator = None) -> torch.Tensor:
    """t (batch,) in (0, 1): uniform, or logit-normal = sigmoid(N(mean, std^2)) (SD3, Esser et al. 2024)."""
    if kind == "uniform":
        return torch.rand(batch, device=device, generator=generator)
    if kind == "logit_normal":
        if not std > 0:
            raise ValueError(f"std={std!r}: expected a positive standard deviation for the logit-normal sampler")
        return torch.sigmoid(mean + std * torch.randn(batch, device=device, generator=generator))
    raise ValueError(f"kind={kind!r}: unknown time sampler; expected one of {TIME_SAMPLERS}")


def drop_mask(batch: int, prob: float, device=None, generator: torch.Generator = None):
    """(batch,) bool: which labels become the null class, each with probability `prob`; None when
    prob is 0 (nothing drawn)."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob!r}: expected a class-dropout probability in [0, 1]")
    if prob == 0.0:
        return None
    return torch.rand(batch, device=device, generator=generator) < prob


def drop_labels(y: torch.Tensor, prob: float, null_class: int, generator: torch.Generator = None) -> torch.Tensor:
    """Replace each label by the null class with probability `prob` (classifier-free guidance training)."""
    return _apply_drop(y, drop_mask(y.shape[0], prob, y.device, generator), null_class)


def _apply_drop(y: torch.Tensor, drop, null_class: int) -> torch.Tensor:
    return y if drop is None else torch.where(drop, torch.full_like(y, null_class), y)


class FlowDraws(NamedTuple):
    """The random draws of a batch's loss: times t (B,), noise (B, C, H, W), and which labels are
    dropped (B,) bool, or None without class dropout. Drawn for a whole global batch, a process
    takes its rows (mpdit.training.step), so the draws do not depend on the number of processes."""

    t: torch.Tensor
    noise: torch.Tensor
    drop: Optional[torch.Tensor]

    def rows(self, start: int, stop: int) -> "FlowDraws":
        drop = None if self.drop is None else self.drop[start:stop]
        return FlowDraws(self.t[start:stop], self.noise[start:stop], drop)


def draw_flow(shape, *, time_sampler: str = "logit_normal", time_mean: float = 0.0, time_std: float = 1.0,
              class_dropout: float = 0.1, device=None, dtype=torch.float32,
              generator: torch.Generator = None) -> FlowDraws:
    """t, noise and the dropped labels of a batch of `shape` (B, C, H, W), drawn in that order."""
    t = sample_time(shape[0], time_sampler, time_mean, time_std, device=device, generator=generator)
    noise = torch.randn(shape, device=device, dtype=dtype, generator=generator)
    return FlowDraws(t, noise, drop_mask(shape[0], class_dropout, device, generator))


def flow_matching_loss(model, z: torch.Tensor, y: torch.Tensor, *, time_sampler: str = "logit_normal",
                       time_mean: float = 0.0, time_std: float = 1.0, class_dropout: float = 0.1,
                       null_class: int = None, generator: torch.Generator = None,
                       draws: FlowDraws = None) -> torch.Tensor:
    """Mean squared error between model(z_t, t, y') and n - z, for one batch of latents z (B, C, H, W).

    y: the class labels, a (B,) tensor or a list of ints; y' = y with each label replaced by the
    null class with probability class_dropout (for classifier-free guidance). t is drawn per
    sample from time_sampler ("logit_normal": sigmoid of N(time_mean, time_std); "uniform");
    z_t = (1 - t) z + t n with n ~ N(0, I), so t = 1 is pure noise. A float32 scalar.
    draws: t, n and the dropped labels given instead of drawn (draw_flow).
    """
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y, dtype=torch.long, device=z.device)
    if null_class is None:
        null_class = model.config.num_classes
    if draws is None:
        draws = draw_flow(z.shape, time_sampler=time_sampler, time_mean=time_mean, time_std=time_std,
                          class_dropout=class_dropout, device=z.device, dtype=z.dtype, generator=generator)
    t, noise = draws.t, draws.noise.to(z.dtype)
    y = _apply_drop(y, draws.drop, null_class)
    prediction = model(interpolate(z, noise, t), t, y)
    return F.mse_loss(prediction.float(), velocity_target(z, noise).float())
