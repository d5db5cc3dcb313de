"""`mpdit convert`: official DiT / SiT / reference-MPDiT checkpoints to the engine's layout and back.

The engine's file is an `mpdit export-ema` safetensors (the weights, the whole model config and
the latents record in its metadata) plus an `origin` entry: the family, official name and
constructor arguments, so that `mpdit sample` runs the weights with their own conventions (DiT:
DDPM; SiT: its time direction) and `--to` writes them back bit for bit.
"""
import argparse
import dataclasses
import json
import os

import torch

from mpdit.compat.layouts import FAMILIES, check_layout, from_official, guess_family, strip_prefixes, to_official
from mpdit.compat.models import official_model
from mpdit.io import export_metadata, read, write_safetensors
from mpdit.io.files import atomic_path, check_output, require_file
from mpdit.models.registry import MODELS
from mpdit.models.transformer import ModelConfig

# The VAE latents each codebase trains on (layouts facts): sd-vae-ft-mse x 0.18215 (DiT's and
# SiT's sample.py default), raw sd-vae-ft-ema normalised per channel (the reference MPDiT).
LATENTS = {"dit": {"vae": "stabilityai/sd-vae-ft-mse", "normalisation": "scale"},
           "sit": {"vae": "stabilityai/sd-vae-ft-mse", "normalisation": "scale"},
           "mpdit-ref": {"vae": "stabilityai/sd-vae-ft-ema", "normalisation": "channel"}}


def _check_family(family: str, argument: str = "family") -> None:
    if family not in FAMILIES:
        raise ValueError(f"{argument}={family!r}: expected one of {', '.join(FAMILIES)}")


def read_official(path: str, weights: str = "ema") -> dict:
    """The state dict in an official checkpoint: a bare state dict, or a training checkpoint's
    "ema" (default) or "model" entry; torch.compile / DDP key prefixes removed. train.py's
    argparse.Namespace under "args" is allowed; nothing else is unpickled."""
    require_file(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a checkpoint, or a pickle of other objects
        raise ValueError(f"checkpoint={path!r}: unreadable as a checkpoint ({type(error).__name__}: "
                         f"{(str(error).splitlines() or ['no details'])[0][:120]})") from None
    if isinstance(state, dict) and isinstance(state.get(weights), dict):
        state = state[weights]
    elif isinstance(state, dict) and weights == "ema" and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint without an EMA
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint={path!r}: holds no state dict (expected tensors, or 'model' / 'ema' entries)")
    return strip_prefixes(state)


def infer_kwargs(state: dict, family: str) -> dict:
    """The constructor arguments a state dict was built with, beyond what the model's name fixes:
    read from the tensors' shapes; missing keys fall back to the defaults (the layout check then
    names them)."""
    shape = lambda key: tuple(state[key].shape) if key in state else None  # noqa: E731
    embed = shape("x_embedder.proj.weight")
    kwargs = {}
    if embed and len(embed) == 4:
        kwargs["in_channels"] = embed[1]
    channels = kwargs.get("in_channels", 4)
    table = shape("y_embedder.embedding_table.weight")
    final = shape("final_layer.linear.weight")
    if family in ("dit", "sit"):
        pos = shape("pos_embed")
        if pos and embed and len(pos) == 3:
            kwargs["input_size"] = embed[-1] * int(round(pos[1] ** 0.5))
        if table:
            kwargs["num_classes"] = table[0] - 1  # the null row of class_dropout_prob > 0 (every release)
        if final and embed:
            kwargs["learn_sigma"] = final[0] == 2 * channels * embed[-1] ** 2
        return kwargs
    fine = shape("pos_embed_lvl2") or shape("pos_embed")  # MPDiTv2's finest table, else MPDiT's
    if fine and len(fine) == 3:
        kwargs["input_size"] = 2 * int(round(fine[1] ** 0.5))  # the fine stage is always patch 2
    if table and embed:
        kwargs["num_classes"] = table[0] - 1
        kwargs["num_condition_tokens"] = table[1] // embed[0]
    if final:
        kwargs["joint"] = final[0] == 2 * channels * 4
    kwargs["time_emb"] = "fno" if "t_embedder.fc0.weight" in state else "mlp"
    kwargs["skip_connection"] = "linear_skip.weight" in state or "linear_skip_lvl1.weight" in state
    return kwargs


def _meta_model(family: str, name: str, kwargs: dict):
    with torch.device("meta"):  # shapes only: an XL model costs no memory
        return official_model(family, name, **kwargs)


def official_to_native(state: dict, family: str, name: str, what: str = "checkpoint") -> tuple:
    """(engine state dict, the official model's kwargs, its ModelConfig) of an official state
    dict; ValueError naming the first missing / unexpected key or shape mismatch."""
    _check_family(family, "from")
    seen = guess_family(state)
    if seen == "engine":
        raise ValueError(f"{what}: already in the engine's layout (an mpdit file); nothing to convert")
    model = _meta_model(family, name, infer_kwargs(state, family))
    check_layout(state, {key: tuple(t.shape) for key, t in model.state_dict().items()}, family, what)
    return from_official(state, model.config, family), model.official_kwargs, model.config


ENGINE_PREFIX = {"dit": "DiT-", "sit": "SiT-", "mpdit-ref": "MPDiT-"}


def native_name(family: str, config) -> str:
    """The engine's registered name of the same width and heads (and DiT/SiT patch); the
    saved config carries the rest (depths, stages, latent size, ...)."""
    for registered, known in MODELS.items():
        if registered.startswith(ENGINE_PREFIX[family]) and not registered.endswith("-3L") \
                and (known.hidden_size, known.num_heads) == (config.hidden_size, config.num_heads) \
                and (family == "mpdit-ref" or known.stages[0][0] == config.stages[0][0]):
            return registered
    raise ValueError(f"model: no engine size with hidden_size={config.hidden_size}, num_heads={config.num_heads}")


def convert_to_native(checkpoint: str, family: str, name: str, out: str, weights: str = "ema") -> dict:
    """An official checkpoint file -> the engine's .safetensors (weights, config, latents, origin)."""
    _check_family(family, "from")
    check_output(out, ".safetensors", inputs=[checkpoint])
    state = read_official(checkpoint, weights)
    native, kwargs, config = official_to_native(state, family, name, what=f"checkpoint={checkpoint!r}")
    # 4 channels: the SD-VAE latents the codebase trains on (8x downsampling); else pixels, no VAE
    latents = {**LATENTS[family], "image_size": 8 * config.latent_size} if config.in_channels == 4 else None
    metadata = export_metadata(native_name(family, config), 0, dataclasses.asdict(config), latents)
    metadata["origin"] = json.dumps({"family": family, "model": name, "kwargs": kwargs,
                                     "source": os.path.basename(checkpoint)})
    write_safetensors(native, out, metadata)
    # what was read from the shapes, said aloud: a class table of N rows is N - 1 classes + the null
    # class (class_dropout_prob > 0, as every released checkpoint; a table without a null row is not supported)
    return {"out": out, "family": family, "model": name, "engine_model": metadata["model"], "tensors": len(native),
            "parameters": sum(t.numel() for t in native.values()), "input_size": config.latent_size,
            "num_classes": config.num_classes, "learned_channels": config.out_channels}


def official_kwargs_of(config) -> dict:
    """Constructor arguments of the official model with this engine config (a file without origin)."""
    if len(config.stages) == 1:
        return dict(input_size=config.latent_size, in_channels=config.in_channels, num_classes=config.num_classes,
                    learn_sigma=config.learn_sigma, mlp_ratio=config.mlp_ratio)
    return dict(input_size=config.latent_size, in_channels=config.in_channels, num_classes=config.num_classes,
                joint=config.learn_sigma, num_condition_tokens=config.class_tokens, time_emb=config.time_embed,
                skip_connection=config.skip, mlp_ratio=config.mlp_ratio)


def convert_to_official(path: str, family: str, out: str, name: str = None) -> dict:
    """The engine's file (a converted or exported .safetensors, or a training checkpoint's EMA) ->
    a bare official state dict (.pt), which the official code loads with strict=True."""
    _check_family(family, "to")
    check_output(out, ".pt", inputs=[path])
    saved = read(path)
    origin = saved.get("origin") or {}
    if origin and origin["family"] != family and {origin["family"], family} != {"dit", "sit"}:
        raise ValueError(f"to={family!r}: {path} holds a {origin['family']} model ({origin['model']})")
    name = name or origin.get("model")
    if name is None:
        raise ValueError(f"model: {path} does not record its official name; give --model (e.g. DiT-XL/2)")
    config = ModelConfig(**{**saved["model_config"], "stages": tuple(map(tuple, saved["model_config"]["stages"]))})
    if not origin:  # trained by the engine: a staged model has MPDiT's layout only, a one-stage model DiT's / SiT's
        staged = len(config.stages) > 1
        if staged != (family == "mpdit-ref"):
            stages = ",".join(f"{patch}:{depth}" for patch, depth in config.stages)
            what = f"an MPDiT model ({saved['model']}, stages {stages})" if staged else \
                f"a one-stage DiT / SiT model ({saved['model']})"
            raise ValueError(f"to={family!r}: {path} holds {what}; convert it --to "
                             + ("mpdit-ref" if staged else "dit or --to sit"))
    kwargs = origin.get("kwargs") if origin.get("model") == name else official_kwargs_of(config)
    model = _meta_model(family, name, kwargs)
    if model.config != config:
        differs = [f.name for f in dataclasses.fields(config)
                   if getattr(config, f.name) != getattr(model.config, f.name)]
        raise ValueError(f"model={name!r}: {path} holds a different network (differs in {', '.join(differs)})")
    official = to_official(saved["state_dict"], config, family)
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    check_layout(official, expected, family, what=path)
    official = {key: official[key].contiguous() for key in expected}  # the official order (safetensors sorts)
    with atomic_path(out) as tmp:
        torch.save(official, tmp)
    return {"out": out, "family": family, "model": name, "tensors": len(official)}

