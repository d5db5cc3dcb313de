"""`mpdit bench --isolate`: each case in its own process. A case stuck where the in-process timer
cannot reach it (signals blocked, as inside one long C / CUDA call) is killed at --case-timeout,
a case whose process crashes is recorded, and the other cases run (CPU, tiny preset).

The ordinary case is an instant stand-in and the timeout counts from the moment the case's
process begins its case, so a busy machine cannot push it past the short timeout."""
import json
import os
import signal
import subprocess
import textwrap

import pytest

from helpers.cli import module_command
from helpers.runs import wait_until
from mpdit.bench import executor
from mpdit.bench.plan import BenchRequest, RunOptions
from mpdit.bench.results import read_stream
from mpdit.bench.runner import run
from mpdit_kernels import attention

# Loaded by every Python process started with this folder on PYTHONPATH: the cases' processes.
SITE = textwrap.dedent("""
    import os, signal, time
    if os.environ.get("BENCH_CASE_FAULT"):
        import mpdit.bench.model_cases as cases

        def stuck(*args, **kwargs):  # deaf to the case's own timer, like a hung kernel launch
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM, signal.SIGINT})
            time.sleep(600)

        def crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGSEGV)

        def instant(plan, case, results, ceilings):  # an ordinary case that no timeout can catch
            import torch
            from mpdit_kernels.attention import attention

            attention(*torch.randn(3, 1, 2, 4, 8).unbind(0))  # records its attention path, as a model would
            results.add(case.spec.label, case.provider, "train", "throughput", "images/s", "-", 1.0)

        cases.bench_sampling, cases.bench_inference, cases.bench_train = stuck, crash, instant
    if os.environ.get("BENCH_CASE_SKIPPED"):  # the case's process exits cleanly without running its case
        import mpdit.bench.executor as executor

        executor.InProcess.run = lambda self, *args: None
""")
pytestmark = pytest.mark.slow  # a process per case

CASES = [["setup", "-", "-"], ["train", "MPDiT-S/8px", "torch"], ["inference", "MPDiT-S/8px", "torch"],
         ["sampling", "MPDiT-S/8px", "torch"]]


def case_processes(out) -> list:
    """The case processes of the run into `out` still alive."""
    ps = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout  # whole lines
    return [line for line in ps.splitlines() if "mpdit.bench.case_process" in line and str(out) in line]


@pytest.fixture
def faulty_cases(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("BENCH_CASE_FAULT", "1")
    monkeypatch.setattr(executor, "GRACE_S", 1.0)
    return tmp_path / "out"


def test_a_stuck_and_a_crashing_case_are_recorded_and_the_rest_run(faulty_cases, monkeypatch):
    out = faulty_cases
    monkeypatch.setattr(attention, "_used", set())  # this process ran attention in other tests: only the cases count
    outcome = run(BenchRequest("tiny", device="cpu", out=str(out), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference", "sampling"]).plan(),
                  RunOptions(progress=False, plots=False, case_timeout=3, isolate=True))
    errors = {tuple(error["case"]): error["error"] for error in outcome["results"].errors}
    assert errors == {("inference", "MPDiT-S/8px", "torch"): "its process ended with signal 11",
                      ("sampling", "MPDiT-S/8px", "torch"): "timed out after 3 s (--case-timeout; its process was "
                                                            "killed)"}
    assert outcome["results"].value("MPDiT-S/8px", "torch", "train", "throughput") == 1.0  # ran in its own process
    streamed = read_stream(str(out / "bench.jsonl"))
    assert list(streamed) == [json.dumps(key) for key in CASES]
    written = json.loads((out / "bench.json").read_text())
    assert len(written["errors"]) == 2 and any(row["mode"] == "train" for row in written["rows"])
    assert "sdpa-cpu" in written["environment"]["attention_paths"]  # recorded by the cases' processes
    assert case_processes(out) == []  # the stuck one was killed, not left behind


def test_a_case_process_that_records_nothing_is_an_error(faulty_cases, monkeypatch):
    out = faulty_cases
    monkeypatch.setenv("BENCH_CASE_SKIPPED", "1")
    outcome = run(BenchRequest("tiny", device="cpu", out=str(out), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train"]).plan(),
                  RunOptions(progress=False, plots=False, isolate=True))
    errors = [(error["case"], error["error"]) for error in outcome["results"].errors]
    assert errors == [(key, "its process exited without recording the case") for key in CASES[:2]]
    assert list(read_stream(str(out / "bench.jsonl"))) == [json.dumps(key) for key in CASES[:2]]


def test_sigterm_stops_the_run_and_its_case_process(faulty_cases):
    out = faulty_cases
    bench = subprocess.Popen(module_command("bench", "--preset", "tiny", "--models", "MPDiT-S/8px", "--providers",
                                            "torch", "--sections", "train,sampling", "--isolate", "--out", out,
                                            "--no-plots", "--no-progress"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (out / "bench.jsonl").exists() and len(read_stream(str(out / "bench.jsonl"))) >= 2, 120,
                   "two finished cases", process=bench, poll=0.2)
        # the sampling case's process is started (and stuck: it blocks the signals it would time out with)
        stuck = '"case": ["sampling"'
        wait_until(lambda: any(stuck in line for line in case_processes(out)), 60, "the stuck case's process",
                   process=bench, poll=0.2)
    finally:
        bench.send_signal(signal.SIGTERM)
        _, stderr = bench.communicate(timeout=60)
    assert bench.returncode == 143 and "interrupted after 2 of 3 cases" in stderr
    assert json.loads((out / "bench.json").read_text())["rows"]
    assert case_processes(out) == []  # the stuck case's process went with the run
