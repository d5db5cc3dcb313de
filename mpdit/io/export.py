"""Models back from files: an EMA export (.safetensors: the EMA weights, the whole model config
in its metadata) or a training checkpoint (.pt). `mpdit.load(path)` is the one call."""
import dataclasses
import json

import torch

from mpdit.io.checkpoint_file import CheckpointError, load_checkpoint
from mpdit.io.files import atomic_path, check_output, require_file
from mpdit.io.layout import check_state_dict
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


def export_ema(state: dict, out: str, source: str = "checkpoint") -> str:
    """A training checkpoint's EMA weights alone, with the model's whole config in the metadata:
    `mpdit.load(out)` and `mpdit sample` rebuild the model from it. The weights are checked
    against that model first: a damaged checkpoint makes no export."""
    with torch.device("meta"):  # shapes only, no memory
        model = _model_of(state["train_config"]["model"], state["model_config"], source)
    check_state_dict(state["ema"], {key: tuple(t.shape) for key, t in model.state_dict().items()}, f"{source} (ema)")
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
            "latents": state.get("latents"), "state_dict": state[weights], "origin": None, "path": path}


def _read_export(path: str, weights: str) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    require_file(path)
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
    try:
        fields = {"model": meta["model"], "step": int(meta["step"]), "model_config": json.loads(meta["model_config"]),
                  "latents": json.loads(meta["latents"]),
                  "origin": json.loads(meta["origin"]) if "origin" in meta else None}
    except KeyError as error:
        raise ValueError(f"checkpoint={path!r}: its metadata has no {error.args[0]!r} entry (a hand-edited or "
                         "damaged export; export it again)") from None
    except (ValueError, TypeError) as error:  # broken JSON, a step that is not a number
        raise ValueError(f"checkpoint={path!r}: its metadata is damaged ({error}); export it again") from None
    if not isinstance(fields["model_config"], dict):
        raise ValueError(f"checkpoint={path!r}: its metadata's model_config is not a JSON object; export it again")
    return {**fields, "state_dict": load_file(path), "path": path}


def load(path: str, weights: str = "ema", kernel_backend: str = "torch", device="cpu") -> torch.nn.Module:
    """The model saved in `path` (an `mpdit export-ema` .safetensors or a training checkpoint .pt),
    with its EMA weights (weights="model": a checkpoint's raw weights), in eval mode on `device`.
    `model.latents` is the latents.json record of a latent run (for mpdit.decode), else None."""
    return build(read(path, weights), kernel_backend, device)


def _model_of(name: str, model_config: dict, what: str, **options) -> torch.nn.Module:
    """The network a saved (name, model_config) describes; ValueError naming `what` when the
    config does not build one, or builds one that differs from it (hand-edited metadata)."""
    try:
        model = create_model(name, **options, **model_overrides(model_config))
    except (KeyError, TypeError, ValueError) as error:  # an unknown model or config field
        raise ValueError(f"{what}: its model config does not build a model ({type(error).__name__}: {error})") from None
    built = json.loads(json.dumps(dataclasses.asdict(model.config)))  # tuples as lists, on both sides
    for key, value in json.loads(json.dumps(model_config)).items():
        if key in built and built[key] != value:
            raise ValueError(f"{what}: its model config says {key}={value!r}, but {name} with that config has "
                             f"{key}={built[key]!r} (hand-edited metadata?)")
    return model


def build(saved: dict, kernel_backend: str = "torch", device="cpu") -> torch.nn.Module:
    """The model of what read() returned, with its weights, in eval mode on `device`; a file whose
    tensors do not fit its recorded config is one ValueError naming the file and the first key."""
    what = f"checkpoint={saved.get('path', '?')!r}"
    model = _model_of(saved["model"], saved["model_config"], what, kernel_backend=kernel_backend)
    check_state_dict(saved["state_dict"], {key: tuple(t.shape) for key, t in model.state_dict().items()}, what)
    model.load_state_dict(saved["state_dict"])
    model.latents = saved["latents"]
    model.origin = saved["origin"]  # mpdit convert's record: mpdit.sample follows the official conventions
    return model.to(device).eval()

