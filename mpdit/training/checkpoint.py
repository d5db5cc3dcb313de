"""Training checkpoints: written atomically, found again by `--resume auto`, read with clear errors.

A checkpoint is one torch file `ckpt-<step>.pt` in the run folder holding, under named keys:
model and ema (state dicts of the unwrapped model: no DDP or torch.compile prefixes),
optimizer, step, rng, data (batches consumed), train_config and model_config. It is written to
a temporary file, flushed to disk and renamed, so a crash mid-write leaves the last good one.
"""
import contextlib
import errno
import glob
import os
import re
import tempfile

import torch

FORMAT = "mpdit-train-1"
_NAME = re.compile(r"ckpt-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def checkpoint_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"ckpt-{step:08d}.pt")


class _RecordingFile:
    """A file for torch.save that keeps the OSError of a failed write: torch reports a full disk
    as an opaque RuntimeError from its zip writer."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        return self.file.flush()


def save(state: dict, run_dir: str, step: int) -> str:
    """Write the checkpoint of `step` atomically; a failed write (a full disk, an I/O error)
    removes its partial file and raises CheckpointError naming the intact previous checkpoint."""
    path = checkpoint_path(run_dir, step)
    tmp = f"{path}.tmp-{os.getpid()}"
    previous = latest(run_dir)
    recording = None
    try:
        with open(tmp, "wb") as f:
            recording = _RecordingFile(f)
            torch.save({"format": FORMAT, **state}, recording)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old set of files or the new one
    except (OSError, RuntimeError) as error:
        cause = recording.error if recording is not None and recording.error is not None else error
        if not isinstance(cause, OSError):
            raise
        with contextlib.suppress(OSError):
            os.remove(tmp)
        what = "no space left" if cause.errno == errno.ENOSPC else (cause.strerror or type(cause).__name__).lower()
        kept = f"{previous} is intact" if previous else "no earlier checkpoint in the run folder"
        raise CheckpointError(f"{what} writing {path}; {kept}") from None
    return path


def remove_stale_partials(run_dir: str) -> list:
    """Remove the partial checkpoints (`*.tmp-<pid>`) of writers that are no longer running (a
    SIGKILL or a crash mid-save); called by the run that holds the folder's lock. Returns them."""
    from mpdit.training.run_lock import process_alive

    removed = []
    for tmp in glob.glob(os.path.join(run_dir, "ckpt-*.pt.tmp-*")):
        pid = tmp.rsplit("-", 1)[-1]
        if not pid.isdigit() or not process_alive(int(pid)):
            os.remove(tmp)
            removed.append(tmp)
    return removed


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


def check_writable(out: str) -> None:
    """ValueError now, not after all the sampling, when `out` cannot be written (tried for real:
    permission bits do not tell for root or special file systems)."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"out={out!r}: a file stands where the folder {folder} should be") from None
    except OSError as error:
        raise ValueError(f"out={out!r}: cannot write in {folder} ({error.strerror or type(error).__name__})") from None


def export_ema_safetensors(state: dict, path: str) -> str:
    """The EMA weights alone, as safetensors, with the model's whole config in the metadata:
    `mpdit.load(path)` and `mpdit sample --checkpoint path` rebuild the model from it."""
    from safetensors.torch import save_file

    if not path.endswith(".safetensors"):
        raise ValueError(f"out={path!r}: expected a path ending in .safetensors")
    check_writable(path)
    from mpdit.loading import export_metadata

    tensors = {name: tensor.contiguous() for name, tensor in state["ema"].items()}
    save_file(tensors, path, metadata=export_metadata(state["train_config"]["model"], state["step"],
                                                      state["model_config"], state.get("latents")))
    return path
