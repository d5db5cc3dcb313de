"""Training checkpoints: written atomically, found again by `--resume auto`, read with clear errors.

A checkpoint is one torch file `ckpt-<step>.pt` in the run folder holding, under named keys:
model and ema (state dicts of the unwrapped model: no DDP or torch.compile prefixes),
optimizer, step, rng, data (batches consumed), train_config and model_config. It is written to
a temporary file, flushed to disk and renamed, so a crash mid-write leaves the last good one.
"""
import glob
import os
import re

import torch

FORMAT = "mpdit-train-1"
_NAME = re.compile(r"ckpt-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def checkpoint_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"ckpt-{step:08d}.pt")


def save(state: dict, run_dir: str, step: int) -> str:
    path = checkpoint_path(run_dir, step)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX: readers see the old set of files or the new one
    return path


def _checkpoints(run_dir: str) -> list:
    """[(step, path)] of the complete checkpoints in run_dir, oldest first."""
    return sorted((int(m.group(1)), p) for p in glob.glob(os.path.join(run_dir, "ckpt-*.pt"))
                  if (m := _NAME.search(os.path.basename(p))))


def paths(run_dir: str) -> list:
    """The complete checkpoints in run_dir, oldest first."""
    return [path for _, path in _checkpoints(run_dir)]


def latest(run_dir: str):
    """Path of the highest-step complete checkpoint in run_dir, or None."""
    found = _checkpoints(run_dir)
    return found[-1][1] if found else None


def prune(run_dir: str, keep: int) -> list:
    """Remove all but the newest `keep` checkpoints (each a full one: any of them can be resumed
    from); returns the paths removed. Called after a new checkpoint is safely in place."""
    old = _checkpoints(run_dir)[:-keep] if keep > 0 else []
    for _, path in old:
        os.remove(path)
    return [path for _, path in old]


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint={path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or not a torch file: say so, not a pickle traceback
        raise CheckpointError(f"checkpoint={path!r}: unreadable ({type(error).__name__}); "
                              "the file is truncated or not an mpdit checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint={path!r}: not an mpdit training checkpoint (format {FORMAT})")
    return state


def check_same_model(state: dict, path: str, model_config: dict) -> None:
    if state["model_config"] != model_config:
        diff = sorted(k for k in model_config if state["model_config"].get(k) != model_config.get(k))
        raise CheckpointError(f"checkpoint={path!r}: it is for another model ({state['train_config']['model']}; "
                              f"differs in {', '.join(diff)}); resume with the same --model and overrides")


# Settings that fix the data order and what a step is: a resumed run must keep them.
FIXED_ON_RESUME = ("model", "dataset", "global_batch_size", "micro_batch_size", "seed", "image_size")
# Settings a resumed run may change (said in one warning line); the others (steps, logging,
# checkpoint cadence, workers, compile, kernel backend) change nothing a checkpoint records.
WARNED_ON_RESUME = ("lr", "weight_decay", "warmup_steps", "grad_clip", "ema_decay", "ema_warmup", "time_sampler",
                    "time_mean", "time_std", "class_dropout", "precision", "on_nonfinite", "parallel")


def check_same_run(state: dict, path: str, config: dict) -> list:
    """CheckpointError if `config` (the new run's TrainConfig as a dict) changes a setting the
    checkpoint's run must keep; else the changed other settings, as 'name: old -> new'."""
    saved = state["train_config"]
    for name in FIXED_ON_RESUME:
        if name in saved and saved[name] != config[name]:
            raise CheckpointError(f"checkpoint={path!r}: {name} was {saved[name]!r}, now {config[name]!r}; a resumed "
                                  f"run keeps its {name} (the data order depends on it)")
    return [f"{name}: {saved[name]!r} -> {config[name]!r}" for name in WARNED_ON_RESUME
            if name in saved and saved[name] != config[name]]


def export_ema_safetensors(state: dict, path: str) -> str:
    """The EMA weights alone, as safetensors, with the model's whole config in the metadata:
    `mpdit.load(path)` and `mpdit sample --checkpoint path` rebuild the model from it."""
    from safetensors.torch import save_file

    if not path.endswith(".safetensors"):
        raise ValueError(f"out={path!r}: expected a path ending in .safetensors")
    from mpdit.loading import export_metadata

    tensors = {name: tensor.contiguous() for name, tensor in state["ema"].items()}
    save_file(tensors, path, metadata=export_metadata(state["train_config"]["model"], state["step"],
                                                      state["model_config"], state.get("latents")))
    return path
