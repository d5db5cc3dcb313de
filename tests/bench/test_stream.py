"""`mpdit bench` streams each finished case, survives SIGTERM, resumes, keeps to its time (CPU, tiny preset)."""
import json
import os
import signal
import subprocess
import time

import pytest

from helpers.cli import module_command, run_cli
from helpers.runs import wait_until
from mpdit.bench import model_cases
from mpdit.bench.plan import BenchRequest, RunOptions
from mpdit.bench.results import read_stream
from mpdit.bench.runner import run

BENCH = ["bench", "--preset", "tiny", "--providers", "torch", "--no-plots", "--no-progress"]


def done_cases(out) -> list:
    path = out / "bench.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["done"] for line in path.read_text().splitlines() if '"done"' in line]


@pytest.mark.slow
def test_sigterm_keeps_the_finished_cases_and_resume_skips_them(tmp_path):
    process = subprocess.Popen(module_command(*BENCH, "--out", tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(done_cases(tmp_path)) >= 2, 240, "two finished cases", process=process, poll=0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    finished = done_cases(tmp_path)
    assert finished[:2] == [["setup", "-", "-"], ["train", "MPDiT-S/8px", "torch"]]
    assert f"interrupted after {len(finished)} of 13 cases" in stderr and stderr.count("\n") == 1
    written = json.loads((tmp_path / "bench.json").read_text())
    first = [row for row in written["rows"] if row["mode"] == "train" and row["metric"] == "throughput"]
    assert len(first) == 1 and first[0]["case"] == "MPDiT-S/8px"  # the finished case, in bench.json too

    resumed = run_cli(*BENCH, "--out", tmp_path, "--resume").ok()
    assert "train MPDiT-S/8px torch:" not in resumed.out  # not run again
    assert "] train SiT-S/2/8px torch:" in resumed.out or ["train", "SiT-S/2/8px", "torch"] in finished
    final = json.loads((tmp_path / "bench.json").read_text())
    again = [row for row in final["rows"] if row["mode"] == "train" and row["metric"] == "throughput"]
    assert [row["case"] for row in again] == ["MPDiT-S/8px", "SiT-S/2/8px"]
    assert again[0]["value"] == first[0]["value"]  # the first run's measurement, kept
    assert len(done_cases(tmp_path)) == 13


def test_time_limit_skips_and_lists_the_rest(tmp_path):
    outcome = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference"]).plan(),
                  RunOptions(progress=False, plots=False, time_limit=1e-9))
    assert outcome["meta"]["skipped"] == ["train MPDiT-S/8px torch", "inference MPDiT-S/8px torch"]
    assert "skipped (past --time-limit): train MPDiT-S/8px torch" in outcome["markdown"]
    assert json.loads((tmp_path / "bench.json").read_text())["skipped"] == outcome["meta"]["skipped"]


def test_a_failing_and_a_hanging_case_are_recorded_and_the_rest_run(tmp_path, monkeypatch):
    def instant(plan, case, results, ceilings):  # an ordinary case that no timeout can catch
        results.add(case.spec.label, case.provider, "train", "throughput", "images/s", "-", 1.0)

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    def hangs(*args, **kwargs):  # cut short by the timer, or the error below says otherwise
        time.sleep(300)

    monkeypatch.setattr(model_cases, "bench_train", instant)
    monkeypatch.setattr(model_cases, "bench_inference", broken)
    monkeypatch.setattr(model_cases, "bench_sampling", hangs)
    outcome = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference", "sampling"]).plan(),
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
    resumed = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["train", "inference", "sampling"]).plan(),
                  RunOptions(progress=False, plots=False, resume=True))
    assert len(resumed["results"].errors) == 2


def test_resume_without_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="resume: no .*bench.jsonl to continue"):
        run(BenchRequest("tiny", device="cpu", out=str(tmp_path)).plan(), RunOptions(resume=True))


def test_default_out_is_a_folder_here_named_for_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run(BenchRequest("tiny", device="cpu", models=["MPDiT-S/8px"], providers=["torch"],
                               sections=["flops"]).plan(),
                  RunOptions(progress=False, plots=False))
    assert os.path.dirname(os.path.relpath(outcome["json"])).startswith("bench-") and "-cpu-tiny" in outcome["json"]


def _write_lines(path, lines: list, end=b"\n"):
    path.write_bytes(b"\n".join(lines) + end)


def test_resume_skips_a_torn_last_line_and_appends_whole_lines_after_it(tmp_path):
    """A case is one line of the stream: a kill mid-write can only tear the last line, which the
    resume skips (that case runs again) and the next append cuts, so no later line joins it."""
    plan = BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                        sections=["flops", "inference"]).plan()
    quick = RunOptions(progress=False, plots=False, time_limit=1e-9)  # the set-up case only
    run(plan, quick)
    stream = tmp_path / "bench.jsonl"
    whole = stream.read_bytes()
    stream.write_bytes(whole + b'{"done": ["inference", "MPDiT-S/8px", "torch"], "rows": [{"metric": "torn')
    assert list(read_stream(str(stream))) == ['["setup", "-", "-"]']
    result = run(plan, RunOptions(progress=False, plots=False, resume=True))
    assert list(read_stream(str(stream))) == ['["setup", "-", "-"]', '["inference", "MPDiT-S/8px", "torch"]']
    assert stream.read_bytes().startswith(whole) and b"torn" not in stream.read_bytes()
    assert result["results"].value("MPDiT-S/8px", "torch", "inference", "throughput") is not None


def test_a_resumed_run_reports_the_attention_paths_its_cases_took(tmp_path, monkeypatch):
    """Which attention path the models took is recorded with the cases: a resume in a fresh process,
    which runs none of them, writes the same report."""
    from mpdit_kernels import attention

    plan = BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                        sections=["flops", "inference"]).plan()
    first = run(plan, RunOptions(progress=False, plots=False))["markdown"]
    assert "sdpa-cpu" in next(line for line in first.splitlines() if "attention paths:" in line)
    monkeypatch.setattr(attention, "_used", set())  # as in a new process
    assert run(plan, RunOptions(progress=False, plots=False, resume=True))["markdown"] == first


@pytest.mark.parametrize("bad, expected", [(b"[1, 2]", "line 2 is a JSON list, not a record"),
                                           (b"\xff\xfe garbage", "line 2 is not JSON"),
                                           (b"42", "line 2 is a JSON int"),
                                           (b'{"done": ["case", "B"]}', "case ['case', 'B'] has no list of rows")])
def test_a_line_that_is_not_a_record_is_one_error_naming_the_file(tmp_path, bad, expected):
    from mpdit.bench.results import read_stream

    stream = tmp_path / "bench.jsonl"
    _write_lines(stream, [b'{"settings": {}}', bad, b'{"done": ["case", "A"], "rows": []}'])
    with pytest.raises(ValueError) as error:
        read_stream(str(stream))
    assert str(stream) in str(error.value) and expected in str(error.value) and "\n" not in str(error.value)


def test_one_bench_per_out_folder_and_resume_only_with_the_same_settings(tmp_path):
    from mpdit.io.run_lock import RunDirInUse, RunLock

    plan = BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"]).plan()
    quick = RunOptions(progress=False, plots=False, time_limit=1e-9)  # the set-up case only
    with RunLock(str(tmp_path), "bench.lock", "out", "mpdit bench"):  # another bench holds the folder
        with pytest.raises(RunDirInUse, match=r"out='.*': in use by PID \d+ .* use another --out"):
            run(plan, quick)
    assert not (tmp_path / "bench.jsonl").exists()  # refused before touching anything
    run(plan, quick)
    assert not (tmp_path / "bench.lock").exists()  # released
    other = BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"],
                         providers=["torch", "native"]).plan()
    before = (tmp_path / "bench.jsonl").read_bytes()
    with pytest.raises(ValueError, match=r"was written with providers=\['torch'\], this run has providers=\['torch', "
                                         r"'native'\]; resume with the same settings"):
        run(other, RunOptions(progress=False, plots=False, resume=True, time_limit=1e-9))
    assert (tmp_path / "bench.jsonl").read_bytes() == before
    run(plan, RunOptions(progress=False, plots=False, resume=True, time_limit=1e-9))  # the same settings: fine
    # a stream of an earlier version (no format recorded; a case's rows each on a line of their own)
    stream = tmp_path / "bench.jsonl"
    first, *rest = stream.read_text().splitlines()
    older = json.loads(first)
    del older["settings"]["format"]
    stream.write_text("\n".join([json.dumps(older), *rest]) + "\n")
    with pytest.raises(ValueError, match=r"was written with format=None, this run has format=3; resume with the same"):
        run(plan, RunOptions(progress=False, plots=False, resume=True, time_limit=1e-9))


def test_on_a_slow_machine_the_default_case_timeout_is_longer_and_said(tmp_path, monkeypatch):
    """The setup case measures a quarter of the reference matrix-product rate: each case gets four
    times the 300 s, and the report says so; --case-timeout given stays as given."""
    import contextlib

    from mpdit.bench import executor

    limits = []
    monkeypatch.setattr(executor, "matmul_peak_tflops", lambda device, dtype: executor.REFERENCE_TFLOPS[device] / 4)
    monkeypatch.setattr(executor, "_time_limit", lambda seconds: limits.append(seconds) or contextlib.nullcontext())
    monkeypatch.setattr(model_cases, "bench_train", lambda plan, case, results, ceilings: results.add(
        case.spec.label, case.provider, "train", "throughput", "images/s", "-", 1.0))
    plan = BenchRequest("tiny", device="cpu", out=str(tmp_path / "a"), models=["MPDiT-S/8px"], providers=["torch"],
                     sections=["train"]).plan()
    outcome = run(plan, RunOptions(progress=False, plots=False))
    assert limits == [None, 1200.0]  # the setup case has no limit
    assert "case timeout 1200 s: 300 s scaled to this machine's measured matrix products" in outcome["markdown"]
    limits.clear()
    run(BenchRequest("tiny", device="cpu", out=str(tmp_path / "b"), models=["MPDiT-S/8px"], providers=["torch"],
                  sections=["train"]).plan(), RunOptions(progress=False, plots=False, case_timeout=7))
    assert limits == [None, 7]
