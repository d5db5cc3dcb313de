"""`mpdit bench --isolate`: each case in its own process, killed at --case-timeout.

In one process a case is stopped by an interval timer, which Python only acts on between two
bytecodes: a hang inside one C or CUDA call (a kernel that never returns, a stuck collective)
holds the whole run. Isolated, the parent starts `python -m mpdit.bench.isolation SETTINGS`
per case; the child runs that one case as `--resume` would (the setup case's ceilings read
back from bench.jsonl) and appends its rows and done line itself. A child that outlives the
timeout (plus a grace period for its own timer) is killed with its process group, and the
parent writes the case's done line with the error. The cost: a process start per case.
"""
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

GRACE_S = 30.0  # the child's own timer fires at the timeout; the kill only when it cannot
# The child says this line on stdout when its case begins: the timeout counts from there, so a
# slow process start (importing torch on a busy machine) never counts against the case.
STARTED = "mpdit-bench-case-started"
START_LIMIT_S = 600.0  # a child that has not begun its case by then (a hung import) is killed


def run_case(settings: dict, key: list, stream: str, timeout: float) -> dict:
    """Run the case `key` in a child process; the error for the parent to record if the child
    wrote no done line for it (it was killed, died, or exited without running the case)."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty child never blocks on it
        child = subprocess.Popen([sys.executable, "-m", "mpdit.bench.isolation",
                                  json.dumps({**settings, "only": key})],
                                 stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        try:
            if _wait_for_start(child) is None:
                kill(child)
                error = {"error": f"its process did not start the case within {START_LIMIT_S:.0f} s", "traceback": ""}
            else:
                child.communicate(timeout=timeout + GRACE_S)
                stderr.seek(0)
                said = stderr.read()
                error = _died(child.returncode, said) if child.returncode else {
                    "error": "its process exited without recording the case", "traceback": said[-2000:]}
        except subprocess.TimeoutExpired:
            kill(child)
            error = {"error": f"timed out after {timeout:.0f} s (--case-timeout; its process was killed)",
                     "traceback": ""}
        except BaseException:  # SIGINT / SIGTERM of the parent: the child goes with it
            kill(child)
            raise
    end_with_newline(stream)  # a killed child's torn last line must not join the next line
    return error


def _wait_for_start(child: subprocess.Popen):
    """Read the child's stdout until it says its case started (True), closes it (False: it
    exited), or START_LIMIT_S passes (None)."""
    deadline = time.monotonic() + START_LIMIT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([child.stdout], [], [], left)[0]:
            return None
        line = child.stdout.readline()
        if not line:
            return False
        if line.strip() == STARTED:
            return True


def _died(code: int, stderr: str) -> dict:
    lines = [line for line in stderr.splitlines() if line.strip()]
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return {"error": f"its process ended with {how}" + (f": {lines[-1]}" if lines else ""),
            "traceback": "\n".join(lines[-20:])}


def kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def end_with_newline(path: str) -> None:
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def main(argv) -> int:
    """The child: one case, its rows appended to the parent's bench.jsonl."""
    from mpdit.bench.runner import run

    settings = json.loads(argv[0])
    run(settings["preset"], device=settings["device"], out=settings["out"], models=settings["models"],
        providers=settings["providers"], sections=settings["sections"], progress=False, plots=False, resume=True,
        case_timeout=settings["case_timeout"], only=settings["only"], echo=lambda *_: None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
