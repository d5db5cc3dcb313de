"""One training checkpoint file: a torch file holding, under named keys, model and ema (state
dicts of the unwrapped model), optimizer, step, rng, data, train_config and model_config.
The run folder's set of them (names, pruning, resuming) is mpdit.training.checkpoint's."""

import torch

from mpdit.io.files import atomic_path, reason, require_file

FORMAT = "mpdit-train-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used or written; the message names the file and the problem."""


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


def save_checkpoint(state: dict, path: str, previous: str = None) -> str:
    """Write `state` to `path` atomically; a failed write (a full disk, an I/O error) leaves no
    partial file and raises CheckpointError saying that `previous` (the newest checkpoint before
    it) is intact."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            recording = _RecordingFile(f)
            try:
                torch.save({"format": FORMAT, **state}, recording)
            except RuntimeError:
                if recording.error is None:
                    raise
                raise recording.error from None
    except ValueError as error:  # atomic_path's one line for an OSError
        kept = f"{previous} is intact" if previous else "no earlier checkpoint in the run folder"
        raise CheckpointError(f"{reason(error.__cause__)} writing {path}; {kept}") from None
    return path


def load_checkpoint(path: str) -> dict:
    """The state in a checkpoint file; CheckpointError for a missing, truncated or foreign file."""
    require_file(path, error=CheckpointError)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or not a torch file: say so, not a pickle traceback
        raise CheckpointError(f"checkpoint={path!r}: unreadable ({type(error).__name__}); "
                              "the file is truncated or not an mpdit checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint={path!r}: not an mpdit training checkpoint (format {FORMAT})")
    return state
