"""`mpdit bench` end to end on the CPU with the tiny preset: every field, every file; no timing asserted."""
import csv
import json

import pytest

from helpers.cli import run_cli
from mpdit.bench.plan import BenchRequest, RunOptions
from mpdit.bench.presets import PRESETS
from mpdit.bench.results import ROW_FIELDS
from mpdit.bench.runner import run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_cli("bench", "--preset", "tiny", "--providers", "torch", "--out", out, "--no-progress"), out


@pytest.mark.slow
def test_runs_end_to_end_and_prints_every_table(tiny_run):
    result, _ = tiny_run
    result.ok()
    for heading in ("| model | params (M) | GFLOPs paper conv.", "Training step", "Inference forward",
                    "Guided Euler sampling", "Fused ops", "measured ceilings: matmul"):
        assert heading in result.out


@pytest.mark.slow
def test_json_and_csv_hold_every_field(tiny_run):
    _, out = tiny_run
    data = json.loads((out / "bench.json").read_text())
    env = data["environment"]
    for key in ("device", "cpu", "threads", "torch", "triton", "flash-attn", "xformers", "attention_paths"):
        assert key in env
    assert env["attention_paths"]  # which attention path ran is recorded
    assert data["errors"] == []
    rows = data["rows"]
    assert rows and all(set(row) == set(ROW_FIELDS) for row in rows)
    modes = {row["mode"] for row in rows}
    assert {"audit", "train", "inference", "sample_step", "sample_run", "forward", "backward", "ceiling"} <= modes
    assert {row["steps"] for row in rows if row["mode"] == "sample_run"} == {2}  # the preset's step count
    metrics = {(row["mode"], row["metric"]) for row in rows}
    for needed in [("train", "throughput"), ("train", "mfu"), ("train", "p20_ms"), ("train", "p80_ms"),
                   ("inference", "median_ms"), ("audit", "train_step_gflop"), ("forward", "copy_fraction"),
                   ("ceiling", "matmul_peak"), ("ceiling", "copy_bandwidth")]:
        assert needed in metrics
    with open(out / "bench.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and tuple(table[0]) == ROW_FIELDS


@pytest.mark.slow
def test_plots_are_written(tiny_run):
    _, out = tiny_run
    for name in ("throughput_vs_gflops.png", "speedup_per_backend.png", "kernel_bandwidth.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_triton_provider_path_runs(tmp_path):
    """The fused-kernel provider end to end (interpreted here: a path check, not a speed figure)."""
    outcome = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["triton"],
                            sections=["train"]).plan(),
                  RunOptions(progress=False))
    assert outcome["results"].errors == []
    assert outcome["results"].value("MPDiT-S/8px", "triton", "train", "throughput") > 0


def test_run_leaves_process_wide_settings_as_it_found_them(tmp_path):
    import torch._functorch.config

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch._functorch.config.donated_buffer)
    outcome = run(BenchRequest("tiny", device="cpu", out=str(tmp_path), models=["MPDiT-S/8px"], providers=["torch"],
                            sections=["inference"]).plan(),
                  RunOptions(progress=False, plots=False))
    assert outcome["results"].errors == []
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch._functorch.config.donated_buffer) == before
    assert outcome["meta"]["environment"]["tf32_matmul"] == before[0]  # the caller's choice, recorded


def test_paper_slices_are_parts_of_the_paper_preset():
    paper = PRESETS["paper"]
    labels = {spec.label for spec in paper.models}
    for name in ("paper-train", "paper-sample", "paper-kernels"):
        part = PRESETS[name]
        assert {spec.label for spec in part.models} <= labels
        assert set(part.providers) <= set(paper.providers) and set(part.sections) <= set(paper.sections)
        assert (part.train_batch, part.inference_batches, part.sample_batches, part.sample_steps) == \
            (paper.train_batch, paper.inference_batches, paper.sample_batches, paper.sample_steps)
    assert "compile" in PRESETS["paper-train"].providers and PRESETS["paper-sample"].sample_batches == (1, 16)
