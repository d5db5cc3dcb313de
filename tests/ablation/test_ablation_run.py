"""`mpdit ablation` end to end on the digits (8 px, two steps, so seconds a row): the stream, the
table, the plot; a killed command continues with only the rows it had not finished; a row killed
in its last evaluation is evaluated, not trained again."""
import json
import os
import shutil
import signal
import subprocess

import pytest

from helpers.cli import module_command, run_cli
from helpers.runs import copy_run, wait_until
from mpdit.ablation.runner import keep_weights
from mpdit.io import jsonl
from mpdit.world import World

pytestmark = pytest.mark.slow

RUN = ["ablation", "--table", "4", "--size", "S", "--dataset", "digits", "--image-size", "8", "--steps", "2",
       "--global-batch-size", "8", "--eval-ref", "digits", "--eval-samples", "8", "--eval-steps", "2",
       "--num-workers", "0", "--log-every", "1", "--rows", "k4,k8"]


@pytest.fixture(scope="module")
def two_rows(tmp_path_factory):
    """Rows k4 and k8 of Table 4, seed 0, each keeping its last checkpoint: (folder, stdout)."""
    out = tmp_path_factory.mktemp("ablation") / "two-rows"
    return out, run_cli(*RUN, "--keep-weights", "checkpoint", "--out", out).ok().out


def test_two_rows_write_the_stream_the_table_and_the_plot(two_rows):
    out, printed = two_rows
    results = jsonl.read(out / "results.jsonl")
    assert [(r["overrides"], r["seed"]) for r in results] == [({"fine_depth": 4}, 0), ({"fine_depth": 8}, 0)]
    for result in results:
        assert result["final"]["step"] == 2 and result["final"]["images_seen"] == 16
        assert result["final"]["compute_gflop"] == pytest.approx(result["gflops"] * 16)
        assert result["final"]["fd_digits"] > 0 and 0 <= result["final"]["recall"] <= 1
        assert result["images_per_s"] > 0
        run_dir = out / result["run"]  # relative to the ablation's folder
        assert [name for name in os.listdir(run_dir) if name.startswith("ckpt-")] == ["ckpt-00000002.pt"]
    table = (out / "table.md").read_text()
    assert printed == table
    row = next(line for line in table.splitlines() if line.startswith("| MPDiT-S k = 4 |"))
    fd = results[0]["final"]["fd_digits"]
    assert f"| {fd:.2f} |  |" in row and row.endswith("| 104.8 | 13.9 | 26.94 |  |")  # no DiT row to compare with
    assert "(paper figures: B, ImageNet 256, 80 epochs)" in table and "MPDiT-S k = 6" not in table
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert [row["curve"][0]["mean"] for row in summary] == pytest.approx([r["final"]["fd_digits"] for r in results])
    assert not (out / "ablation.lock").exists()


def test_a_row_killed_in_its_last_evaluation_is_evaluated_not_trained_again(two_rows, tmp_path):
    out = tmp_path / "ablation"
    shutil.copytree(two_rows[0], out)
    first, second = jsonl.read(out / "results.jsonl")
    metrics = out / second["run"] / "metrics.jsonl"
    trained = [r for r in jsonl.read(metrics) if "eval_samples" not in r and not r.get("final")]
    # as a kill during k8's evaluation leaves it: its checkpoint of the last step, no evaluation, no result
    with open(out / "results.jsonl", "w") as f:
        f.write(json.dumps(first) + "\n")
    with open(metrics, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in trained)
    first_metrics = (out / first["run"] / "metrics.jsonl").read_text()
    run_cli(*RUN, "--keep-weights", "checkpoint", "--out", out).ok()
    again = jsonl.read(out / "results.jsonl")
    assert again[0] == first and again[1]["final"] == second["final"]  # the same EMA, samples and figures
    steps = [r for r in jsonl.read(metrics) if "eval_samples" not in r and not r.get("final")]
    assert steps == trained  # no step trained again
    assert (out / first["run"] / "metrics.jsonl").read_text() == first_metrics


def test_a_killed_command_continues_with_the_rows_it_had_not_finished(tmp_path):
    out = tmp_path / "ablation"
    argv = [*RUN, "--out", out]
    child = subprocess.Popen(module_command(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(jsonl.read(out / "results.jsonl")) >= 1, 300, "the first row's result", child)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
    before = jsonl.read(out / "results.jsonl")
    first_metrics = (out / before[0]["run"] / "metrics.jsonl").read_text()
    run_cli(*argv).ok()
    after = jsonl.read(out / "results.jsonl")
    assert after[:len(before)] == before  # the finished rows kept, not trained again
    assert (out / before[0]["run"] / "metrics.jsonl").read_text() == first_metrics
    assert sorted(r["overrides"]["fine_depth"] for r in after) == [4, 8]  # each row once
    assert not (out / "ablation.lock").exists()


def test_a_finished_row_keeps_its_ema_as_an_export_or_nothing(digits_run, tmp_path):
    ema = copy_run(digits_run.folder, tmp_path / "ema")
    keep_weights(ema, "ema", World())
    assert os.path.getsize(os.path.join(ema, "ema.safetensors")) > 0
    assert not [name for name in os.listdir(ema) if name.startswith("ckpt-")]
    none = copy_run(digits_run.folder, tmp_path / "none")
    keep_weights(none, "none", World())
    assert not [name for name in os.listdir(none) if name.startswith("ckpt-") or name.endswith(".safetensors")]


@pytest.mark.distributed
def test_under_torchrun_every_rank_runs_the_rows_and_rank_0_writes(tmp_path):
    """Two gloo processes, two rows in one process group: each row's training is the trainer's DDP
    run, its evaluation shared by the ranks; one result line per row."""
    from helpers.torchrun import torchrun

    launch = torchrun(["-m", "mpdit", *RUN, "--out", tmp_path / "ablation"], per_node=2)
    assert launch.returncode == 0, launch.output[-3000:]
    results = jsonl.read(tmp_path / "ablation" / "results.jsonl")
    assert [r["overrides"]["fine_depth"] for r in results] == [4, 8]
    assert all(r["final"]["samples"] == 8 and r["final"]["fd_digits"] > 0 for r in results)
    assert (tmp_path / "ablation" / "table.md").read_text().count("| MPDiT-S k = ") == 2
