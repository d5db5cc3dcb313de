"""Rank 0's messages during a run: each on stderr as `mpdit train: ...` and appended, with the
time, to `<run-dir>/log.txt`, the file DiT's create_logger writes and users look for. The steps'
records (loss, gradient norm, images/s) go to the file only: the progress bar shows them, and
metrics.jsonl holds them as numbers. The file is only ever appended to: a resumed or rolled-back
run continues it, so it tells the folder's whole history."""
import os
import sys
import time

LOG_NAME = "log.txt"


def say(run_dir: str, text: str, stderr: bool = True) -> None:
    """One message of rank 0 (the callers check the rank); into log.txt where the folder exists
    (not before a refused command has created it)."""
    if stderr:
        print(f"mpdit train: {text}", file=sys.stderr)
    if run_dir and os.path.isdir(run_dir):
        try:
            with open(os.path.join(run_dir, LOG_NAME), "a") as f:
                f.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}\n")
        except OSError:  # a log that cannot be written loses lines, not the run
            pass
