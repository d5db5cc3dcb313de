"""Sampled images into an .npz of the ADM evaluator's layout (arr_0: uint8 NHWC, labels) and a
PNG grid beside it, on every rank of a process group: each image depends on (seed, index) only,
each rank streams its share into shards (FILE.shards/) as they are made, a killed run resumes
from them, and the main rank merges them at the end."""
import hashlib
import itertools

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mpdit.inference.methods import run_method
from mpdit.inference.settings import SampleSettings
from mpdit.inference.shards import Shards
from mpdit.io.images import save_grid, to_uint8
from mpdit.models.vae import decode, load_vae

GRID_CLASSES = GRID_PER_CLASS = 10


def _grid_indices(labels: np.ndarray) -> list:
    """The first GRID_PER_CLASS images of each of the first GRID_CLASSES classes."""
    chosen, seen = [], {}
    for i, label in enumerate(labels.tolist()):
        if label in seen or len(seen) < GRID_CLASSES:
            if seen.setdefault(label, 0) < GRID_PER_CLASS:
                seen[label] += 1
                chosen.append(i)
    return chosen


def _barrier(world) -> None:
    if world.size > 1:
        dist.barrier()


def _batch_progress(bar, expected):
    """A callback that shows the batch's model calls so far on the bar ("batch: model call 7/50")."""
    calls = itertools.count(1)
    of = f"/{expected}" if expected else ""
    return lambda: bar.disable or bar.set_postfix_str(f"batch: model call {next(calls)}{of}")


def draw_images(model, labels: torch.Tensor, index: np.ndarray, settings: SampleSettings, method: str,
                latent_info, decoder, device, on_evaluation=None) -> np.ndarray:
    """uint8 NHWC images for these indices (float32 NCHW latents with latents_only); on_evaluation()
    after each model call."""
    config = model.config
    shape = (config.in_channels, config.latent_size, config.latent_size)
    # One noise stream per sample index: the images do not depend on how ranks split the work
    # (the SDE sampler's later noise comes from the batch's generator).
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(settings.seed * 1_000_003 + int(i)))
                         for i in index]).to(device)
    generator = torch.Generator(device=device).manual_seed(settings.seed * 1_000_003 + int(index[0]))
    x = run_method(model, labels[index].to(device), method, steps=settings.steps, cfg_scale=settings.cfg_scale,
                   guidance_interval=settings.guidance_interval, cuda_graph=settings.cuda_graph, noise=noise,
                   generator=generator, on_evaluation=on_evaluation)
    if settings.latents_only:
        return x.float().cpu().numpy()
    if decoder is not None:
        x = decode(x, latent_info, decoder)
    return to_uint8(x).numpy()


def write_samples(model, labels: torch.Tensor, out: str, world, settings: SampleSettings, method: str,
                  latent_info: dict = None, identity: dict = None) -> dict:
    """One image per label into `out` (arr_0, labels) and a PNG grid beside it, on every rank of
    `world` (each its share, streamed to shards; the main rank merges). latent_info: latents.json's
    record (None: a pixel model). `identity` (what the model is) and the recipe are recorded with
    the shards, so settings.resume continues only the same run."""
    shards = Shards(out)
    record = {**(identity or {}), **settings.recipe(method, latent_info and latent_info["vae"]),
              "count": len(labels), "labels": hashlib.sha256(labels.numpy().tobytes()).hexdigest()[:16]}
    shards.check(record, settings.resume)  # every rank: all raise alike
    todo = np.flatnonzero(~shards.covered(len(labels)))
    if world.main:
        shards.record(record)
    _barrier(world)  # every rank has read the folder, and it exists, before any rank writes a shard
    decoder = load_vae(latent_info["vae"], world.device) if latent_info and not settings.latents_only else None
    size = settings.batch_size
    mine = [todo[start:start + size] for start in range(0, len(todo), size)][world.rank::world.size]
    calls = {"heun": 2 * settings.steps, "dopri5": None}.get(method, settings.steps)  # model calls per batch
    with tqdm(total=sum(map(len, mine)), unit="img", desc="sampling",
              disable=not (settings.progress and world.main)) as bar:
        for index in mine:
            tick = _batch_progress(bar, calls)  # a batch can take minutes: its model calls
            images = draw_images(model, labels, index, settings, method, latent_info, decoder, world.device, tick)
            shards.write(index, images, labels[index].numpy())
            bar.update(len(index))
    _barrier(world)  # every shard is written
    if settings.latents_only:  # no grid: latents are not pictures
        if world.main:
            shards.merge(len(labels), key="latents")
            shards.remove()
        return {"npz": out, "latents": "float32 (N, C, H, W), normalised as in the model's latents record",
                "count": len(labels)}
    result = {"npz": out, "png": out[:-4] + ".png", "count": len(labels)}
    if world.main:
        merged_labels, owner = shards.merge(len(labels))
        grid = _grid_indices(merged_labels)
        save_grid(torch.from_numpy(np.concatenate(list(shards.rows(owner, grid, "images")))),
                  merged_labels[grid].tolist(), result["png"])
        shards.remove()
    return result
