"""One run per folder: a lock file naming its holder (PID, host, start time). `mpdit train`
holds its run dir (train.lock), `mpdit bench` its --out (bench.lock).

A second command on a folder in use stops at once, naming the holder; a lock left by a
process that is gone (same host, PID no longer running) is taken over with a warning. The file
is created with O_EXCL, so of two processes starting together exactly one wins. On another host
liveness cannot be checked: the message says which file to remove if that run is gone; a lock of
an earlier round of the same torchrun job (same TORCHELASTIC_RUN_ID, a worker restarted after a
failure, whose rank 0 may now be on another node) is taken over, because torchrun stops every
worker of a round before it starts the next.
"""
import json
import os
import socket
import sys
import time

LOCK_NAME = "train.lock"


class RunDirInUse(ValueError):
    """The run folder belongs to a live run."""


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # vanished, or cut short by a crash mid-write: no holder to name


def torchrun_job():
    """The torchrun job this process is a worker of (its --rdzv-id), or None: outside torchrun, or
    under the default id 'none' that unrelated jobs share."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    return None if job in (None, "", "none") else job


class RunLock:
    """Context manager holding `<folder>/<name>` for this process; `option` and `command` name
    the folder's option and the command in the messages."""

    def __init__(self, run_dir: str, name: str = LOCK_NAME, option: str = "run_dir", command: str = "mpdit train"):
        self.path = os.path.join(run_dir, name)
        self.option, self.command = option, command
        self.mine = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "torchrun_job": torchrun_job()}
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.mine, f)
        return True

    def acquire(self) -> None:
        for _ in range(3):  # a stale lock removed by a racer: try again, once or twice
            if self._create():
                self.held = True
                return
            holder = _read(self.path)
            pid, host = holder.get("pid"), holder.get("host")
            gone = isinstance(pid, int) and host == self.mine["host"] and not process_alive(pid)
            job = self.mine["torchrun_job"]
            earlier_round = job is not None and holder.get("torchrun_job") == job
            if gone or earlier_round:
                why = "which is no longer running" if gone else "a worker of an earlier round of this torchrun job"
                print(f"{self.command}: warning: taking over {self.path} from PID {pid} on {host}, {why}",
                      file=sys.stderr)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            if not holder:  # unreadable: a holder that crashed while writing it, or a racer mid-write
                time.sleep(0.1)
                holder = _read(self.path)
                if not holder:
                    raise RunDirInUse(f"{self.option}={os.path.dirname(self.path)!r}: locked by an unreadable "
                                      f"{self.path}; remove it if no run uses this folder")
                continue
            flag = "--" + self.option.replace("_", "-")
            raise RunDirInUse(f"{self.option}={os.path.dirname(self.path)!r}: in use by PID {pid} on {host} (since "
                              f"{holder.get('started')}); stop that run or use another {flag} (a run that is gone "
                              f"from another host leaves {self.path}: remove it)")
        raise RunDirInUse(f"{self.option}={os.path.dirname(self.path)!r}: could not take {self.path}")

    def release(self) -> None:
        if self.held and _read(self.path).get("pid") == self.mine["pid"]:
            os.remove(self.path)
        self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
