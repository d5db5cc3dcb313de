"""`mpdit sample`: images from a training checkpoint, an EMA export or a converted official file
(EMA weights by default) into an .npz of the ADM evaluator's layout and a PNG grid
(mpdit.inference.npz_writer), evaluated against a reference batch on request."""
import dataclasses
import json
import os

import torch

from mpdit.compat.sampling import sampling_model
from mpdit.evaluation import METRICS, evaluate
from mpdit.evaluation.inception import find_weights
from mpdit.inference.labels import image_labels
from mpdit.inference.methods import check_method
from mpdit.inference.npz_writer import write_samples
from mpdit.inference.settings import SampleSettings
from mpdit.io import atomic_path, check_output, read
from mpdit.io.npz_images import check_images_header
from mpdit.world import joined_world


def sample_checkpoint(path: str, settings: SampleSettings) -> dict:
    """Samples of the file at `path` as `settings` say; returns what was written (and the metrics
    with settings.eval_ref, also written to FILE.metrics.json). Everything that can be refused is
    refused before the model is loaded, and the reference before an hour of sampling."""
    settings.check()
    check_output(settings.out, ".npz", inputs=[path] + ([settings.eval_ref] if settings.eval_ref else []))
    if settings.eval_ref:
        check_images_header(settings.eval_ref)
        settings = dataclasses.replace(settings, inception_weights=find_weights(settings.inception_weights))
    if settings.cuda_graph and not torch.cuda.is_available():
        raise ValueError("--cuda-graph: CUDA graphs need a CUDA GPU; none is visible here")
    saved = read(path, "ema" if settings.ema else "model")  # a training checkpoint or an EMA export
    method = check_method(settings.method, saved.get("origin"), path, settings.guidance_interval, settings.cuda_graph)
    model_config, latent_info = saved["model_config"], saved["latents"]
    if latent_info is None and model_config["in_channels"] not in (1, 3):
        raise ValueError(f"checkpoint={path!r}: latents of {model_config['in_channels']} channels and no "
                         "latents.json record of their VAE to decode them with")
    if settings.latents_only and latent_info is None:
        raise ValueError(f"--latents-only: checkpoint={path!r} is a pixel-space model; its samples are images")
    if latent_info is not None and settings.vae is not None:
        latent_info = {**latent_info, "vae": settings.vae}
    labels = image_labels(model_config["num_classes"], settings.classes, settings.per_class, settings.num_samples,
                          settings.random_classes, settings.seed)
    identity = {"checkpoint": os.path.abspath(path), "weights": "ema" if settings.ema else "model"}
    with joined_world() as world:
        model = sampling_model(saved, world.device)
        result = write_samples(model, labels, settings.out, world, settings, method, latent_info, identity)
        if world.main and settings.eval_ref:
            metrics = evaluate(settings.eval_ref, settings.out, inception_weights=settings.inception_weights,
                               progress=settings.progress)
            result["metrics_file"] = settings.out[:-4] + ".metrics.json"
            result["metrics"] = {key: metrics[key] for key in METRICS}
            with atomic_path(result["metrics_file"]) as tmp, open(tmp, "w") as f:
                json.dump(metrics, f, indent=1)
        return result
