"""`mpdit sample`: images from a training checkpoint or an EMA export (EMA weights by default).

Writes an .npz of uint8 (N, H, W, C) images under arr_0 (the ADM evaluator's layout) and their
labels, and a PNG grid beside it. Exactly the images asked for, each depending on (seed, index)
only: alone or under torchrun, each rank streams its images into shards (FILE.shards/) as they
are made, `resume` continues a killed run from them, and the main rank merges them at the end.
"""
import hashlib
import itertools
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mpdit.compat.sampling import sampling_model
from mpdit.diffusion.ddpm import ddpm_sample
from mpdit.diffusion.guidance import check_guidance
from mpdit.diffusion.sampling import sample
from mpdit.evaluation import METRICS, evaluate
from mpdit.evaluation.inception import find_weights
from mpdit.inference.api import METHODS, check_method
from mpdit.inference.shards import Shards
from mpdit.io import atomic_path, check_output, read
from mpdit.io.images import save_grid, to_uint8
from mpdit.io.npz_images import check_images_header
from mpdit.models.vae import decode, load_vae
from mpdit.world import joined_world

MAX_SAMPLES = 10_000_000  # a sanity bound: 200x FID-50K
GRID_CLASSES = GRID_PER_CLASS = 10


def sample_labels(num_classes: int, classes=None, per_class: int = None, num_samples: int = None,
                  random_classes: bool = False, seed: int = 0) -> torch.Tensor:
    """The label of every image. num_samples: balanced over `classes` (default every class),
    N // C of each and one more of the first N % C, in class blocks; with random_classes, each
    drawn uniformly from them (DiT's sample_ddp.py). per_class: that many of each of `classes`
    (default 10 random ones), in the order given."""
    if num_samples is not None and per_class is not None:
        raise ValueError(f"per_class={per_class}, num_samples={num_samples}: give one of them")
    if random_classes and num_samples is None:
        raise ValueError("random_classes: draws the class of each of num_samples images; give num_samples")
    if num_samples is not None and not 1 <= num_samples <= MAX_SAMPLES:
        raise ValueError(f"num_samples={num_samples}: expected an integer in [1, {MAX_SAMPLES}]")
    per_class = 1 if per_class is None else per_class
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: expected a positive integer")
    if classes is None and num_samples is not None:
        classes = list(range(num_classes))
    elif classes is None:  # random labels, reproducible from the seed
        classes = torch.randint(0, num_classes, (10,), generator=torch.Generator().manual_seed(seed)).tolist()
    classes = list(classes)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or not classes:
        raise ValueError(f"classes={bad or classes}: expected labels in [0, {num_classes - 1}] for this checkpoint")
    pool = torch.tensor(classes)
    if num_samples is None:
        return pool.repeat_interleave(per_class)
    if random_classes:
        return pool[torch.randint(0, len(pool), (num_samples,), generator=torch.Generator().manual_seed(seed))]
    return pool[torch.arange(num_samples) % len(pool)].sort(stable=True).values  # a block per class: grid rows


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


@dataclass
class Sampler:
    """How images are drawn: the sampler, its steps and guidance, the seed (image i's noise
    depends on (seed, i) only), the per-call batch, and the VAE for latent models."""

    method: str = "euler"
    steps: int = 50
    cfg_scale: float = 1.0
    guidance_interval: tuple = (0.0, 1.0)
    seed: int = 0
    batch_size: int = 64
    cuda_graph: bool = False
    latent_info: dict = None  # latents.json's record (None: a pixel model)
    latents_only: bool = False  # keep the latents, not decoded (no VAE needed)

    def settings(self) -> dict:
        return {"method": self.method, "steps": self.steps, "cfg_scale": self.cfg_scale,
                "guidance_interval": list(self.guidance_interval), "seed": self.seed,
                "vae": self.latent_info and self.latent_info["vae"],
                **({"latents_only": True} if self.latents_only else {})}  # shards of earlier runs resume as before

    def evaluations(self):
        """Model calls per batch, or None where the sampler decides (dopri5)."""
        return {"heun": 2 * self.steps, "dopri5": None}.get(self.method, self.steps)

    def draw(self, model, labels: torch.Tensor, index: np.ndarray, decoder, device, on_evaluation=None) -> np.ndarray:
        """uint8 NHWC images for these indices (float32 NCHW latents with latents_only); on_evaluation()
        after each model call."""
        config = model.config
        shape = (config.in_channels, config.latent_size, config.latent_size)
        # One noise stream per sample index: the images do not depend on how ranks split the work
        # (the SDE sampler's later noise comes from the batch's generator).
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + int(i)))
                             for i in index]).to(device)
        generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + int(index[0]))
        y = labels[index].to(device)
        if self.method == "ddpm":
            x = ddpm_sample(model, y, steps=self.steps, cfg_scale=self.cfg_scale, noise=noise, generator=generator,
                            on_evaluation=on_evaluation)
        else:
            x = sample(model, y, method=self.method, steps=self.steps, cfg_scale=self.cfg_scale,
                       guidance_interval=self.guidance_interval, noise=noise, generator=generator,
                       cuda_graph=self.cuda_graph, on_evaluation=on_evaluation)
        if self.latents_only:
            return x.float().cpu().numpy()
        if decoder is not None:
            x = decode(x, self.latent_info, decoder)
        return to_uint8(x).numpy()


def sample_to_npz(model, labels: torch.Tensor, out: str, world, sampler: Sampler, identity: dict = None,
                  resume: bool = False, progress: bool = True) -> dict:
    """One image per label into `out` (arr_0, labels) and a PNG grid beside it, on every rank of
    `world` (each its share, streamed to shards; the main rank merges). `identity` (what the
    model is) and the sampler's settings are recorded with the shards, so `resume` continues only
    the same run."""
    shards = Shards(out)
    settings = {**(identity or {}), **sampler.settings(), "count": len(labels),
                "labels": hashlib.sha256(labels.numpy().tobytes()).hexdigest()[:16]}
    shards.check(settings, resume)  # every rank: all raise alike
    todo = np.flatnonzero(~shards.covered(len(labels)))
    if world.main:
        shards.record(settings)
    _barrier(world)  # every rank has read the folder, and it exists, before any rank writes a shard
    decoding = sampler.latent_info is not None and not sampler.latents_only
    decoder = load_vae(sampler.latent_info["vae"], world.device) if decoding else None
    pieces = [todo[start:start + sampler.batch_size] for start in range(0, len(todo), sampler.batch_size)]
    mine = pieces[world.rank::world.size]
    with tqdm(total=sum(map(len, mine)), unit="img", desc="sampling", disable=not (progress and world.main)) as bar:
        for index in mine:
            tick = _batch_progress(bar, sampler.evaluations())  # a batch can take minutes: its model calls
            shards.write(index, sampler.draw(model, labels, index, decoder, world.device, tick), labels[index].numpy())
            bar.update(len(index))
    _barrier(world)  # every shard is written
    if sampler.latents_only:  # no grid: latents are not pictures
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


def sample_checkpoint(path: str, out: str, classes=None, per_class: int = None, cfg_scale: float = 1.0,
                      steps: int = 50, method: str = None, guidance_interval=(0.0, 1.0), seed: int = 0,
                      use_ema: bool = True, batch_size: int = 64, vae: str = None, cuda_graph: bool = False,
                      num_samples: int = None, random_classes: bool = False, resume: bool = False,
                      eval_ref: str = None, inception_weights: str = None, progress: bool = True,
                      latents_only: bool = False) -> dict:
    """Samples of a checkpoint into an .npz (the ADM evaluator's layout: arr_0 uint8 NHWC, labels)
    and a PNG grid; labels as in sample_labels. method: default euler, or ddpm for a converted DiT
    (a DDPM model; `steps` respaced steps). eval_ref: evaluate the result against this reference
    batch (mpdit eval) and write the metrics to FILE.metrics.json. latents_only: a latent model's
    samples as they come out of it (`latents`, float32 NCHW, with labels; no VAE, no grid), for
    mpdit.decode later."""
    if method is not None and method not in METHODS:  # before any loading
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    check_guidance(cfg_scale, None, guidance_interval)  # before any loading: a NaN scale would sample all black
    check_output(out, ".npz", inputs=[path] + ([eval_ref] if eval_ref else []))
    if latents_only and eval_ref:
        raise ValueError("--latents-only with --eval: the evaluator reads images; decode the latents first")
    if eval_ref:  # before an hour of sampling, not after
        check_images_header(eval_ref)
        inception_weights = find_weights(inception_weights)
    if cuda_graph and not torch.cuda.is_available():
        raise ValueError("--cuda-graph: CUDA graphs need a CUDA GPU; none is visible here")
    saved = read(path, "ema" if use_ema else "model")  # a training checkpoint or an EMA export
    method = check_method(method, saved.get("origin"), path, guidance_interval, cuda_graph)
    model_config = saved["model_config"]
    latent_info = saved["latents"]
    if latent_info is None and model_config["in_channels"] not in (1, 3):
        raise ValueError(f"checkpoint={path!r}: latents of {model_config['in_channels']} channels and no "
                         "latents.json record of their VAE to decode them with")
    if latents_only and latent_info is None:
        raise ValueError(f"--latents-only: checkpoint={path!r} is a pixel-space model; its samples are images")
    if latent_info is not None and vae is not None:
        latent_info = {**latent_info, "vae": vae}
    labels = sample_labels(model_config["num_classes"], classes, per_class, num_samples, random_classes, seed)
    sampler = Sampler(method, steps, cfg_scale, tuple(guidance_interval), seed, batch_size, cuda_graph, latent_info,
                      latents_only)
    identity = {"checkpoint": os.path.abspath(path), "weights": "ema" if use_ema else "model"}
    with joined_world() as world:
        model = sampling_model(saved, world.device)
        result = sample_to_npz(model, labels, out, world, sampler, identity, resume, progress)
        if world.main and eval_ref:
            metrics = evaluate(eval_ref, out, inception_weights=inception_weights, progress=progress)
            result["metrics_file"] = out[:-4] + ".metrics.json"
            result["metrics"] = {key: metrics[key] for key in METRICS}
            with atomic_path(result["metrics_file"]) as tmp, open(tmp, "w") as f:
                json.dump(metrics, f, indent=1)
        return result
