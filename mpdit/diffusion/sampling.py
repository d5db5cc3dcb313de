"""Samplers that integrate a velocity field v(x, t) from noise (t = 1) to data (t = 0).

Each takes `velocity(x, t)` with t a float shared by the batch, returns (x_0, nfe).
Fixed-step samplers keep the time grid on the host so the loop never syncs the device.
"""
import math

import torch

from mpdit.diffusion.guidance import GraphedVelocity, GuidedVelocity

SAMPLERS = ("euler", "heun", "dopri5", "euler_maruyama")
GRAPHED = ("euler", "heun")  # the samplers that can replay CUDA graphs: a fixed time grid


def time_grid(steps: int, shift: float = 1.0) -> list:
    """steps + 1 times from 1 to 0, uniform then shifted by t' = s t / (1 + (s - 1) t).

    shift > 1 spends more steps near the noise end (SD3's time shift, Esser et al. 2024).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps={steps!r}: expected a positive integer")
    if not shift > 0:
        raise ValueError(f"shift={shift!r}: expected a positive time shift (1 = none)")
    uniform = [1.0 - i / steps for i in range(steps + 1)]
    return [shift * t / (1.0 + (shift - 1.0) * t) for t in uniform]


def euler(velocity, x: torch.Tensor, steps: int, shift: float = 1.0):
    """First-order ODE integration: x <- x + (t_next - t) v(x, t)."""
    grid = time_grid(steps, shift)
    for t, t_next in zip(grid, grid[1:]):
        x = x + (t_next - t) * velocity(x, t)
    return x, steps


def heun(velocity, x: torch.Tensor, steps: int, shift: float = 1.0):
    """Second-order ODE integration (explicit trapezoid), two evaluations a step."""
    grid = time_grid(steps, shift)
    for t, t_next in zip(grid, grid[1:]):
        dt = t_next - t
        d = velocity(x, t)
        d_next = velocity(x + dt * d, t_next)
        x = x + dt * 0.5 * (d + d_next)
    return x, 2 * steps


def dopri5(velocity, x: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5):
    """Adaptive Dormand-Prince 5(4) through torchdiffeq; nfe counts the evaluations it made."""
    from torchdiffeq import odeint  # optional at import time: only this sampler needs it

    nfe = 0

    def field(t, state):
        nonlocal nfe
        nfe += 1
        # The solver's last step may overshoot t = 0 before it interpolates back; the
        # network is only defined on [0, 1], so it sees the end point there.
        return velocity(state, t.clamp(0.0, 1.0))

    times = torch.tensor([1.0, 0.0], dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                         device=x.device)
    trajectory = odeint(field, x, times, method="dopri5", rtol=rtol, atol=atol)
    return trajectory[-1], nfe


def euler_maruyama(velocity, x: torch.Tensor, steps: int, shift: float = 1.0, diffusion_norm: float = 1.0,
                   generator: torch.Generator = None):
    """Reverse SDE with the marginals of the flow (SiT's "SBDM" diffusion, Ma et al. 2024, sec. 3).

    With tau = 1 - t running towards data:
        dx = [-v + w(t) s(x, t)] dtau + sqrt(2 w(t)) dW,   w(t) = norm * t / (1 - t),
    where the score follows from the velocity of the linear interpolant:
        s(x, t) = -(x + (1 - t) v) / t   (since E[n | x_t] = x_t + (1 - t) v).
    w is infinite at t = 1, so the first step is a plain Euler step; the last step is
    deterministic too (no noise added at t = 0), as SiT's "Mean" last step.
    """
    grid = time_grid(steps, shift)
    for i, (t, t_next) in enumerate(zip(grid, grid[1:])):
        h = t - t_next  # > 0
        v = velocity(x, t)
        if i == 0 or i == steps - 1 or t >= 1.0:
            x = x - h * v
            continue
        w = diffusion_norm * t / (1.0 - t)
        score = -(x + (1.0 - t) * v) / t
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        x = x + h * (-v + w * score) + math.sqrt(2.0 * w * h) * noise
    return x, steps


@torch.no_grad()
def sample(model, y, *, method: str = "euler", steps: int = 50, cfg_scale: float = 1.0,
           guide_channels: int = None, guidance_interval: tuple = (0.0, 1.0), shift: float = 1.0,
           rtol: float = 1e-5, atol: float = 1e-5, noise: torch.Tensor = None, generator: torch.Generator = None,
           cuda_graph: bool = False, return_nfe: bool = False, on_evaluation=None):
    """Latents for class labels y: a (B,) tensor or a list of ints in [0, num_classes).

    Integrates the model's velocity from noise at t = 1 to data at t = 0 with `method`
    (euler / heun: `steps` fixed steps, shifted by `shift`; dopri5: adaptive to rtol / atol;
    euler_maruyama: the reverse SDE). Classifier-free guidance: v = v_uncond + cfg_scale *
    (v_cond - v_uncond), from one forward of the doubled batch; cfg_scale 1 = no guidance; it
    applies only for t in guidance_interval = (t_lo, t_hi) (the conditional velocity elsewhere)
    and, with guide_channels = k, only to the first k channels. noise: the (B, C, H, W) start
    (default: standard normal from `generator`). cuda_graph (euler / heun on a GPU): each
    evaluation replayed from a CUDA graph. Returns x_0 (B, C, H, W), in the model's latent
    space (mpdit.decode turns latents into pixels); with return_nfe, (x_0, model evaluations).
    on_evaluation(): called after each model evaluation (a progress bar).
    """
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y, dtype=torch.long, device=next(model.parameters()).device)
    if method not in SAMPLERS:
        raise ValueError(f"method={method!r}: unknown sampler; expected one of {SAMPLERS}")
    if cuda_graph and method not in GRAPHED:
        raise ValueError(f"cuda_graph=True with method={method!r}: expected one of {GRAPHED} (fixed time grids)")
    cfg = model.config
    shape = (y.shape[0], cfg.in_channels, cfg.latent_size, cfg.latent_size)
    if noise is None:
        param = next(model.parameters())
        noise = torch.randn(shape, device=param.device, dtype=param.dtype, generator=generator)
    elif noise.shape != shape:
        raise ValueError(f"noise: expected shape {shape}, got {tuple(noise.shape)}")
    if cuda_graph:
        velocity = graphed_velocity(model, y, noise, cfg_scale, guide_channels, guidance_interval)
    else:
        velocity = GuidedVelocity(model, y, cfg_scale, guide_channels, guidance_interval)
    field = velocity if on_evaluation is None else _reporting(velocity, on_evaluation)
    if method == "euler":
        x, _ = euler(field, noise, steps, shift)
    elif method == "heun":
        x, _ = heun(field, noise, steps, shift)
    elif method == "dopri5":
        x, _ = dopri5(field, noise, rtol, atol)
    else:
        x, _ = euler_maruyama(field, noise, steps, shift, generator=generator)
    return (x, velocity.nfe) if return_nfe else x


def _reporting(velocity, on_evaluation):
    def field(x, t):
        v = velocity(x, t)
        on_evaluation()
        return v

    return field


def graphed_velocity(model, y, noise, cfg_scale, guide_channels, guidance_interval) -> GraphedVelocity:
    """The model's CUDA-graphed velocity for this batch shape and guidance, captured once per
    batch size and kept on the model (a many-batch run captures once, then replays; the graphs
    and their memory go with the model)."""
    key = (tuple(noise.shape), noise.dtype, float(cfg_scale), guide_channels, tuple(guidance_interval),
           torch.is_autocast_enabled("cuda"))
    cache = model.__dict__.setdefault("cuda_graphs", {})
    if key not in cache:
        cache[key] = GraphedVelocity(GuidedVelocity(model, y.clone(), cfg_scale, guide_channels, guidance_interval),
                                     noise)
    cache[key].retarget(y)
    return cache[key]
