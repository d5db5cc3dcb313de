"""`mpdit sample`: images from a training checkpoint or an EMA export (EMA weights by default).

Writes an .npz of uint8 (N, H, W, C) images under arr_0 (the ADM evaluator's layout) and a
PNG grid beside it. Under torchrun each rank samples its share; rank 0 writes the files.
"""
import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mpdit.compat.sampling import sampling_model
from mpdit.diffusion.ddpm import ddpm_sample
from mpdit.diffusion.guidance import check_guidance
from mpdit.diffusion.sampling import SAMPLERS, sample
from mpdit.io import atomic_path, check_output, read
from mpdit.io.images import save_grid, to_uint8
from mpdit.models.vae import decode, load_vae
from mpdit.world import close_world, init_world


METHODS = SAMPLERS + ("ddpm",)  # ddpm: DiT's eps models (mpdit convert --from dit)


def check_method(method, saved: dict, path: str, guidance_interval, cuda_graph: bool) -> str:
    """The sampler for this file: DDPM for a converted DiT (its weights are an eps model), a flow
    sampler for everything else; ValueError for a mismatch."""
    dit = (saved.get("origin") or {}).get("family") == "dit"
    method = method or ("ddpm" if dit else "euler")
    if dit and method != "ddpm":
        raise ValueError(f"method={method!r}: {path} holds a DiT (DDPM eps) model; use --method ddpm")
    if method == "ddpm" and not dit:
        raise ValueError(f"method='ddpm': for DiT's DDPM models (mpdit convert --from dit); {path} holds a flow "
                         "model")
    if method == "ddpm" and (tuple(guidance_interval) != (0.0, 1.0) or cuda_graph):
        raise ValueError("method='ddpm': guidance intervals and CUDA graphs are for the flow samplers")
    return method


def sample_checkpoint(path: str, out: str, classes=None, per_class: int = 1, cfg_scale: float = 1.0,
                      steps: int = 50, method: str = None, guidance_interval=(0.0, 1.0), seed: int = 0,
                      use_ema: bool = True, batch_size: int = 64, vae: str = None, cuda_graph: bool = False,
                      num_samples: int = None, progress: bool = True) -> dict:
    """Samples of a checkpoint into an .npz (the ADM evaluator's layout: arr_0 uint8 NHWC, labels)
    and a PNG grid. Labels: `per_class` of each of `classes` (default 10 random classes), or
    num_samples balanced over `classes` (default every class), e.g. 50 of each of 1000 for FID-50K.
    method: default euler, or ddpm for a converted DiT (a DDPM model; `steps` respaced steps)."""
    if method is not None and method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: expected a positive integer")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples={num_samples}: expected a positive integer")
    check_guidance(cfg_scale, None, guidance_interval)  # before any loading: a NaN scale would sample all black
    check_output(out, ".npz", inputs=[path])
    if cuda_graph and not torch.cuda.is_available():
        raise ValueError("--cuda-graph: CUDA graphs need a CUDA GPU; none is visible here")
    saved = read(path, "ema" if use_ema else "model")  # a training checkpoint or an EMA export
    method = check_method(method, saved, path, guidance_interval, cuda_graph)
    model_config = saved["model_config"]
    latent_info = saved["latents"]
    if latent_info is None and model_config["in_channels"] not in (1, 3):
        raise ValueError(f"checkpoint={path!r}: latents of {model_config['in_channels']} channels and no "
                         "latents.json record of their VAE to decode them with")
    if latent_info is not None and vae is not None:
        latent_info = {**latent_info, "vae": vae}
    num_classes = model_config["num_classes"]
    if classes is None and num_samples is not None:
        classes = list(range(num_classes))
    elif classes is None:  # random labels, reproducible from the seed
        classes = torch.randint(0, num_classes, (10,), generator=torch.Generator().manual_seed(seed)).tolist()
    classes = list(classes)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes={bad}: expected labels in [0, {num_classes - 1}] for this checkpoint")
    world = init_world()
    try:
        model = sampling_model(saved, world.device)
        decoder = load_vae(latent_info["vae"], world.device) if latent_info is not None else None
        if num_samples is not None:  # balanced: class i % len(classes), sorted so that the grid has a row per class
            labels = torch.tensor(classes)[torch.arange(num_samples) % len(classes)].sort(stable=True).values
        else:
            labels = torch.tensor(classes).repeat_interleave(per_class)
        mine = torch.arange(len(labels))[world.rank::world.size]  # this rank's share, fixed by index
        images = []
        batches = tqdm(range(0, len(mine), batch_size), unit="batch", desc="sampling",
                       disable=not (progress and world.main))
        for start in batches:
            index = mine[start:start + batch_size]
            # One noise stream per sample index: the images do not depend on how ranks split the work
            # (the SDE sampler's later noise comes from the batch's generator).
            shape = (model_config["in_channels"], model_config["latent_size"], model_config["latent_size"])
            noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
                                 for i in index]).to(world.device)
            generator = torch.Generator(device=world.device).manual_seed(seed * 1_000_003 + int(index[0]))
            if method == "ddpm":
                x = ddpm_sample(model, labels[index].to(world.device), steps=steps, cfg_scale=cfg_scale, noise=noise,
                                generator=generator)
            else:
                x = sample(model, labels[index].to(world.device), method=method, steps=steps, cfg_scale=cfg_scale,
                           guidance_interval=guidance_interval, noise=noise, generator=generator,
                           cuda_graph=cuda_graph)
            if decoder is not None:
                x = decode(x, latent_info, decoder)
            images.append((index, to_uint8(x)))
        if world.size > 1:  # to rank 0 only: a 50k-image run is gigabytes
            gathered = [None] * world.size if world.main else None
            dist.gather_object(images, gathered, dst=0)
            images = [part for rank_parts in gathered for part in rank_parts] if world.main else []
        result = {"npz": out, "png": out[:-4] + ".png", "count": len(labels)}
        if world.main:
            order = torch.cat([index for index, _ in images]).argsort()
            array = torch.cat([part for _, part in images])[order]
            with atomic_path(out) as tmp, open(tmp, "wb") as f:  # a complete file or none
                np.savez(f, arr_0=array.numpy(), labels=labels.numpy())
            save_grid(array, labels.tolist(), result["png"])
        return result
    finally:
        close_world(world)
