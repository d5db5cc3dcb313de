"""`mpdit.sample` for models from `mpdit.load`, whatever they were converted from: a converted
SiT's velocity is turned around (mpdit.compat.sampling), a converted DiT (a DDPM eps model)
samples with method="ddpm" only, and a flow model refuses method="ddpm", as `mpdit sample` does."""
import torch

from mpdit.compat.sampling import sampling_model
from mpdit.inference.methods import check_method, run_method


def sample(model, y, *, method: str = None, steps: int = 50, cfg_scale: float = 1.0,
           guidance_interval: tuple = (0.0, 1.0), cuda_graph: bool = False, noise: torch.Tensor = None,
           generator: torch.Generator = None, **flow_options):
    """Samples for labels y from a model of `mpdit.load` or `mpdit.create_model`, in its latent
    space. method: euler (default), heun, dopri5, euler_maruyama (mpdit.diffusion.sampling.sample,
    whose other options pass through), or ddpm (`steps` respaced steps) for a file converted from
    DiT, which is a DDPM eps model and refuses the flow samplers."""
    origin = getattr(model, "origin", None)
    method = check_method(method, origin, "this model", guidance_interval, cuda_graph)
    if (origin or {}).get("family") in ("dit", "sit"):  # official conventions: DiT module, SiT reversed velocity
        model = sampling_model({"state_dict": model.state_dict(), "origin": origin}, next(model.parameters()).device,
                               native=model)
    return run_method(model, y, method, steps=steps, cfg_scale=cfg_scale, guidance_interval=guidance_interval,
                      cuda_graph=cuda_graph, noise=noise, generator=generator, **flow_options)
