"""`mpdit.sample` for models from `mpdit.load`, whatever they were converted from: a converted
SiT's velocity is turned around (mpdit.compat.sampling), a converted DiT (a DDPM eps model)
samples with method="ddpm" only, and a flow model refuses method="ddpm", as `mpdit sample` does."""
import torch

from mpdit.compat.sampling import sampling_model
from mpdit.diffusion.ddpm import ddpm_sample
from mpdit.diffusion.guidance import check_guidance
from mpdit.diffusion.sampling import SAMPLERS
from mpdit.diffusion.sampling import sample as flow_sample

METHODS = SAMPLERS + ("ddpm",)  # ddpm: DiT's eps models (mpdit convert --from dit)


def check_method(method, origin, source: str, guidance_interval=(0.0, 1.0), cuda_graph: bool = False) -> str:
    """The sampler for a model of this origin (mpdit convert's record, or None): DDPM for a
    converted DiT (its weights are an eps model), a flow sampler for everything else; ValueError
    naming `source` for a mismatch."""
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


def sample(model, y, *, method: str = None, steps: int = 50, cfg_scale: float = 1.0,
           guidance_interval: tuple = (0.0, 1.0), cuda_graph: bool = False, noise: torch.Tensor = None,
           generator: torch.Generator = None, **flow_options):
    """Samples for labels y from a model of `mpdit.load` or `mpdit.create_model`, in its latent
    space. method: euler (default), heun, dopri5, euler_maruyama (mpdit.diffusion.sampling.sample,
    whose other options pass through), or ddpm (`steps` respaced steps) for a file converted from
    DiT, which is a DDPM eps model and refuses the flow samplers."""
    origin = getattr(model, "origin", None)
    method = check_method(method, origin, "this model", guidance_interval, cuda_graph)
    family = (origin or {}).get("family")
    if family in ("dit", "sit"):  # the official conventions: DiT's module, SiT's reversed velocity
        model = sampling_model({"state_dict": model.state_dict(), "origin": origin}, next(model.parameters()).device,
                               native=model)
    if method == "ddpm":
        check_guidance(cfg_scale)
        if flow_options:
            raise ValueError(f"{', '.join(sorted(flow_options))}: options of the flow samplers, not of method='ddpm'")
        return ddpm_sample(model, y, steps=steps, cfg_scale=cfg_scale, noise=noise, generator=generator)
    return flow_sample(model, y, method=method, steps=steps, cfg_scale=cfg_scale, guidance_interval=guidance_interval,
                       cuda_graph=cuda_graph, noise=noise, generator=generator, **flow_options)
