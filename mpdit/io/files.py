"""Writing files so that nothing already written is lost: outputs checked before any work, and
written under a temporary name, then renamed (a reader sees the old file or the new one)."""
import contextlib
import errno
import os
import tempfile


def require_file(path: str, argument: str = "checkpoint", error=ValueError) -> None:
    """`error` in one line when `path` cannot be read as the input file of `argument`: it is
    missing, or a folder (a run folder given for one of its checkpoints)."""
    if os.path.isdir(path):
        raise error(f"{argument}={path!r}: is a folder, expected a checkpoint file (a run folder holds its "
                    "checkpoints as ckpt-<step>.pt)")
    if not os.path.isfile(path):
        raise error(f"{argument}={path!r}: no such file")


def check_writable(out: str) -> None:
    """ValueError now, not after the work, when `out` cannot be written (tried for real:
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


def check_output(out: str, suffix: str, inputs=()) -> None:
    """ValueError before any work when `out` does not end in `suffix` (the format written), is one
    of the `inputs` the command reads, or cannot be written."""
    if not out.endswith(suffix):
        raise ValueError(f"out={out!r}: expected a path ending in {suffix}")
    for source in inputs:
        if os.path.abspath(source) == os.path.abspath(out) or (
                os.path.exists(out) and os.path.exists(source) and os.path.samefile(source, out)):
            raise ValueError(f"out={out!r}: the file this command reads; write to another path")
    check_writable(out)


def reason(error: OSError) -> str:
    """What went wrong in a failed write, in a few words."""
    return "no space left" if error.errno == errno.ENOSPC else (error.strerror or type(error).__name__).lower()


@contextlib.contextmanager
def atomic_path(out: str):
    """A temporary path beside `out` to write to. When the block ends without error the file is
    flushed to disk and renamed to `out`; otherwise it is removed and `out` is left as it was.
    An OSError (a full disk, no permission) becomes a one-line ValueError caused by it."""
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)  # atomic on POSIX
    except OSError as error:
        raise ValueError(f"out={out!r}: cannot write ({reason(error)})") from error
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # gone already after the rename


def find_weight_file(path, env: str, file_name: str, argument: str, expected: str) -> tuple:
    """(the weight file or None, where torch's hub cache keeps `file_name`): `path`, else $`env`,
    else the hub cache. A path given that is not a file is refused, naming `argument`."""
    import torch

    path = path or os.environ.get(env)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
    if path:
        if not os.path.isfile(path):
            raise ValueError(f"{argument}={path!r}: no such file (expected {expected})")
        return path, cached
    return (cached if os.path.isfile(cached) else None), cached
