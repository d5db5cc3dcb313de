"""Flow matching (rectified-flow interpolant), time samplers, class dropout and the loss.

Convention throughout: z_t = (1 - t) z + t n with z data and n ~ N(0, I); t = 0 is data,
t = 1 is noise; the network regresses the velocity n - z (docs/model.md, "Training and sampling recipe").
"""
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


def drop_labels(y: torch.Tensor, prob: float, null_class: int, generator: torch.Generator = None) -> torch.Tensor:
    """Replace each label by the null class with probability `prob` (classifier-free guidance training)."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob!r}: expected a class-dropout probability in [0, 1]")
    if prob == 0.0:
        return y
    drop = torch.rand(y.shape, device=y.device, generator=generator) < prob
    return torch.where(drop, torch.full_like(y, null_class), y)


def flow_matching_loss(model, z: torch.Tensor, y: torch.Tensor, *, time_sampler: str = "logit_normal",
                       time_mean: float = 0.0, time_std: float = 1.0, class_dropout: float = 0.1,
                       null_class: int = None, generator: torch.Generator = None) -> torch.Tensor:
    """Mean squared error between model(z_t, t, y') and n - z, for one batch of latents z (B, C, H, W).

    y: the class labels, a (B,) tensor or a list of ints; y' = y with each label replaced by the
    null class with probability class_dropout (for classifier-free guidance). t is drawn per
    sample from time_sampler ("logit_normal": sigmoid of N(time_mean, time_std); "uniform");
    z_t = (1 - t) z + t n with n ~ N(0, I), so t = 1 is pure noise. A float32 scalar.
    """
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y, dtype=torch.long, device=z.device)
    if null_class is None:
        null_class = model.config.num_classes
    t = sample_time(z.shape[0], time_sampler, time_mean, time_std, device=z.device, generator=generator)
    noise = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
    y = drop_labels(y, class_dropout, null_class, generator)
    prediction = model(interpolate(z, noise, t), t, y)
    return F.mse_loss(prediction.float(), velocity_target(z, noise).float())
