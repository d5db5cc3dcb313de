"""Models back from files: an EMA export (.safetensors: the EMA weights, the whole model config
in its metadata) or a training checkpoint (.pt). `mpdit.load(path)` is the one call."""
import json

import torch

from mpdit.io.checkpoint_file import CheckpointError, load_checkpoint
from mpdit.io.files import atomic_path, check_output
from mpdit.models import create_model
from mpdit.models.transformer import overridable_fields

EXPORT_FORMAT = "mpdit-ema-1"


def model_overrides(model_config: dict) -> dict:
    """create_model overrides that rebuild the network a saved model_config describes."""
    overrides = {key: model_config[key] for key in overridable_fields() if key in model_config}
    overrides["stages"] = [tuple(stage) for stage in model_config["stages"]]
    return overrides


def export_metadata(name: str, step: int, model_config: dict, latents) -> dict:
    """The metadata an EMA export carries (safetensors metadata is str -> str)."""
    return {"format": EXPORT_FORMAT, "model": name, "step": str(step), "model_config": json.dumps(model_config),
            "latents": json.dumps(latents)}


def write_safetensors(tensors: dict, out: str, metadata: dict) -> str:
    """Tensors and metadata to `out` (.safetensors), atomically."""
    from safetensors.torch import save_file

    check_output(out, ".safetensors")
    with atomic_path(out) as tmp:
        save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, tmp, metadata=metadata)
    return out


def export_ema(state: dict, out: str) -> str:
    """A training checkpoint's EMA weights alone, with the model's whole config in the metadata:
    `mpdit.load(out)` and `mpdit sample` rebuild the model from it."""
    return write_safetensors(state["ema"], out, export_metadata(state["train_config"]["model"], state["step"],
                                                                state["model_config"], state.get("latents")))


def read(path: str, weights: str = "ema") -> dict:
    """{'model', 'step', 'model_config', 'latents', 'state_dict', 'origin'} of an export or a
    checkpoint; origin: the official family, name and constructor arguments of a file made by
    `mpdit convert`, else None."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights={weights!r}: expected 'ema' or 'model'")
    if path.endswith(".safetensors"):
        return _read_export(path, weights)
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        if "not an mpdit training checkpoint" in str(error):  # an official DiT / SiT / MPDiT file, say
            raise CheckpointError(f"{error}; an official DiT, SiT or MPDiT checkpoint: "
                                  "`mpdit convert --from dit|sit|mpdit-ref` it first") from None
        raise
    return {"model": state["train_config"]["model"], "step": state["step"], "model_config": state["model_config"],
            "latents": state.get("latents"), "state_dict": state[weights], "origin": None}


def _read_export(path: str, weights: str) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as error:  # missing, truncated or not safetensors: one clear line
        raise ValueError(f"checkpoint={path!r}: unreadable as safetensors ({type(error).__name__})") from None
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"checkpoint={path!r}: not an `mpdit export-ema` file with its model config "
                         "(an export without one: export the checkpoint again)")
    if weights != "ema":
        raise ValueError(f"checkpoint={path!r}: an export holds the EMA weights only")
    return {"model": meta["model"], "step": int(meta["step"]), "model_config": json.loads(meta["model_config"]),
            "latents": json.loads(meta["latents"]), "state_dict": load_file(path),
            "origin": json.loads(meta["origin"]) if "origin" in meta else None}


def load(path: str, weights: str = "ema", kernel_backend: str = "torch", device="cpu") -> torch.nn.Module:
    """The model saved in `path` (an `mpdit export-ema` .safetensors or a training checkpoint .pt),
    with its EMA weights (weights="model": a checkpoint's raw weights), in eval mode on `device`.
    `model.latents` is the latents.json record of a latent run (for mpdit.decode), else None."""
    return build(read(path, weights), kernel_backend, device)


def build(saved: dict, kernel_backend: str = "torch", device="cpu") -> torch.nn.Module:
    """The model of what read() returned, with its weights, in eval mode on `device`."""
    model = create_model(saved["model"], kernel_backend=kernel_backend, **model_overrides(saved["model_config"]))
    model.load_state_dict(saved["state_dict"])
    model.latents = saved["latents"]
    model.origin = saved["origin"]  # mpdit convert's record: mpdit.sample follows the official conventions
    return model.to(device).eval()

