"""The command line as the tests run it: `run_cli` calls `mpdit.cli.main(argv)` in this process
(milliseconds, against seconds for a new interpreter), as click's CliRunner does; `run_module`
starts `python -m mpdit` for the tests whose subject is the process boundary (signals, torchrun,
the console script, what happens at interpreter exit)."""
import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass

import torch

from mpdit.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The refusal's one line, after the checks every refusal must pass: exit 2, nothing on
        stdout, exactly one line on stderr, no traceback."""
        assert self.code == 2, f"exit {self.code}, expected 2; stderr: {self.err[-2000:]}"
        assert "Traceback" not in self.err, self.err[-3000:]
        assert self.out == "", self.out[-2000:]
        assert self.err.endswith("\n") and self.err.count("\n") == 1, f"not one line: {self.err[-2000:]!r}"
        return self.err[:-1]

    @property
    def last_line(self) -> str:
        """The last line on stderr (after notices others print first), checked as `error` checks
        the whole: exit 2, no traceback."""
        assert self.code == 2, f"exit {self.code}, expected 2; stderr: {self.err[-2000:]}"
        assert "Traceback" not in self.err, self.err[-3000:]
        return self.err.strip().splitlines()[-1]

    def ok(self) -> "CliResult":
        assert self.code == 0, f"exit {self.code}; stderr: {self.err[-3000:]}"
        return self


def run_cli(*args) -> CliResult:
    """`mpdit ARGS` in this process. An exception main() does not turn into its one-line error
    propagates and fails the test, as a traceback would. The process-wide settings main() chooses
    (TF32) are put back afterwards."""
    out, err = io.StringIO(), io.StringIO()
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(arg) for arg in args])
            except SystemExit as stop:  # argparse's own refusals
                code = stop.code
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return CliResult(0 if code is None else code, out.getvalue(), err.getvalue())


def module_command(*args) -> list:
    return [sys.executable, "-m", "mpdit", *(str(arg) for arg in args)]


def run_module(*args, env: dict = None, timeout: float = 300) -> CliResult:
    """`python -m mpdit ARGS` as a new process."""
    result = subprocess.run(module_command(*args), capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    return CliResult(result.returncode, result.stdout, result.stderr)
