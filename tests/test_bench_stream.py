"""`mpdit bench` streams each finished case, survives SIGTERM, resumes, keeps to its time (CPU, tiny preset)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mpdit.bench import model_cases
from mpdit.bench.plan import make_plan
from mpdit.bench.runner import RunOptions, run
from mpdit.bench.timing import read_stream

BENCH = [sys.executable, "-m", "mpdit", "bench", "--preset", "tiny", "--providers", "torch", "--no-plots",
         "--no-progress"]
ENV = {**os.environ, "TRITON_INTERPRET": "0"}


def done_cases(out) -> list:
    path = out / "bench.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["done"] for line in path.read_text().splitlines() if '"done"' in line]


def test_sigterm_keeps_the_finished_cases_and_resume_skips_them(tmp_path):
    process = subprocess.Popen([*BENCH, "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)
    deadline = time.time() + 240
    while len(done_cases(tmp_path)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    finished = done_cases(tmp_path)
    assert finished[:2] == [["setup", "-", "-"], ["train", "MPDiT-S/8px", "torch"]]
    assert f"interrupted after {len(finished)} of 13 cases" in stderr and stderr.count("\n") == 1
    written = json.loads((tmp_path / "bench.json").read_text())
    first = [row for row in written["rows"] if row["mode"] == "train" and row["metric"] == "throughput"]
    assert len(first) == 1 and first[0]["case"] == "MPDiT-S/8px"  # the finished case, in bench.json too

    resumed = subprocess.run([*BENCH, "--out", str(tmp_path), "--resume"], capture_output=True, text=True,
                             timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "train MPDiT-S/8px torch:" not in resumed.stdout  # not run again
    assert "] train SiT-S/2/8px torch:" in resumed.stdout or ["train", "SiT-S/2/8px", "torch"] in finished
    final = json.loads((tmp_path / "bench.json").read_text())
    again = [row for row in final["rows"] if row["mode"] == "train" and row["metric"] == "throughput"]
    assert [row["case"] for row in again] == ["MPDiT-S/8px", "SiT-S/2/8px"]
    assert again[0]["value"] == first[0]["value"]  # the first run's measurement, kept
    assert len(done_cases(tmp_path)) == 13


def test_time_limit_skips_and_lists_the_rest(tmp_path):
    outcome = run(make_plan("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference"]),
                  RunOptions(progress=False, plots=False, time_limit=1e-9))
    assert outcome["meta"]["skipped"] == ["train MPDiT-S/8px torch", "inference MPDiT-S/8px torch"]
    assert "skipped (past --time-limit): train MPDiT-S/8px torch" in outcome["markdown"]
    assert json.loads((tmp_path / "bench.json").read_text())["skipped"] == outcome["meta"]["skipped"]


def test_a_failing_and_a_hanging_case_are_recorded_and_the_rest_run(tmp_path, monkeypatch):
    def instant(results, spec, provider, *args, **kwargs):  # an ordinary case that no timeout can catch
        results.add(spec.label, provider, "train", "throughput", "images/s", "-", 1.0)

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    def hangs(*args, **kwargs):  # cut short by the timer, or the error below says otherwise
        time.sleep(300)

    monkeypatch.setattr(model_cases, "bench_train", instant)
    monkeypatch.setattr(model_cases, "bench_inference", broken)
    monkeypatch.setattr(model_cases, "bench_sampling", hangs)
    outcome = run(make_plan("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference", "sampling"]),
                  RunOptions(progress=False, plots=False, case_timeout=2))
    errors = {tuple(error["case"]): error["error"] for error in outcome["results"].errors}
    assert errors == {("inference", "MPDiT-S/8px", "torch"): "RuntimeError: broken on purpose",
                      ("sampling", "MPDiT-S/8px", "torch"): "timed out after 2 s (--case-timeout)"}
    assert outcome["results"].value("MPDiT-S/8px", "torch", "train", "throughput") == 1.0
    streamed = read_stream(str(tmp_path / "bench.jsonl"))
    assert list(streamed) == [
        json.dumps(key) for key in (["setup", "-", "-"], ["train", "MPDiT-S/8px", "torch"],
                                    ["inference", "MPDiT-S/8px", "torch"], ["sampling", "MPDiT-S/8px", "torch"])]
    # the errors are streamed with their cases, so a resumed run still reports them
    assert streamed[json.dumps(["inference", "MPDiT-S/8px", "torch"])][1]["error"] == "RuntimeError: broken on purpose"
    resumed = run(make_plan("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference", "sampling"]),
                  RunOptions(progress=False, plots=False, resume=True))
    assert len(resumed["results"].errors) == 2


def test_resume_without_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="resume: no .*bench.jsonl to continue"):
        run(make_plan("tiny", device="cpu", out=str(tmp_path)), RunOptions(resume=True))


def test_default_out_is_a_folder_here_named_for_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run(make_plan("tiny", device="cpu", models=["MPDiT-S/8px"], providers=["torch"], sections=["flops"]),
                  RunOptions(progress=False, plots=False))
    assert os.path.dirname(os.path.relpath(outcome["json"])).startswith("bench-") and "-cpu-tiny" in outcome["json"]
