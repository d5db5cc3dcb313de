"""The sampling methods and the one place that picks between them: DDPM for DiT's eps models
(mpdit convert --from dit), a flow sampler (euler, heun, dopri5, euler_maruyama) for the rest."""
import torch

from mpdit.diffusion.ddpm import ddpm_sample
from mpdit.diffusion.guidance import check_guidance
from mpdit.diffusion.sampling import SAMPLERS
from mpdit.diffusion.sampling import sample as flow_sample

METHODS = SAMPLERS + ("ddpm",)


def check_method(method, origin, source: str, guidance_interval=(0.0, 1.0), cuda_graph: bool = False) -> str:
    """The method for a model of this origin (mpdit convert's record, or None): `method`, or by
    default DDPM for a converted DiT (its weights are an eps model) and euler for everything else;
    ValueError naming `source` for a mismatch."""
    if method is not None and method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    dit = (origin or {}).get("family") == "dit"
    method = method or ("ddpm" if dit else "euler")
    if dit and method != "ddpm":
        raise ValueError(f"method={method!r}: {source} holds a DiT (DDPM eps) model; use --method ddpm "
                         "(method='ddpm')")
    if method == "ddpm" and not dit:
        raise ValueError(f"method='ddpm': for DiT's DDPM models (mpdit convert --from dit); {source} holds a flow "
                         "model")
    if method == "ddpm" and (tuple(guidance_interval) != (0.0, 1.0) or cuda_graph):
        raise ValueError("method='ddpm': guidance intervals and CUDA graphs are for the flow samplers")
    return method


def run_method(model, y, method: str, *, steps: int, cfg_scale: float = 1.0, guidance_interval=(0.0, 1.0),
               cuda_graph: bool = False, noise: torch.Tensor = None, generator: torch.Generator = None,
               on_evaluation=None, **flow_options) -> torch.Tensor:
    """Latents for labels y from a model as the samplers run it (mpdit.compat.sampling_model's),
    with a method check_method chose: `steps` respaced DDPM steps, or the flow sampler (whose
    other options pass through)."""
    if method == "ddpm":
        check_guidance(cfg_scale)
        if flow_options:
            raise ValueError(f"{', '.join(sorted(flow_options))}: options of the flow samplers, not of method='ddpm'")
        return ddpm_sample(model, y, steps=steps, cfg_scale=cfg_scale, noise=noise, generator=generator,
                           on_evaluation=on_evaluation)
    return flow_sample(model, y, method=method, steps=steps, cfg_scale=cfg_scale, guidance_interval=guidance_interval,
                       cuda_graph=cuda_graph, noise=noise, generator=generator, on_evaluation=on_evaluation,
                       **flow_options)
