"""`mpdit train` from the command line: every bad input or setting refused in one line before any
work (nothing created), and what the progress bar says while the run draws its sample grid."""
import re

import pytest

from helpers.cli import run_cli
from helpers.runs import TRAIN_ARGS, copy_run
from mpdit.io import load_checkpoint


@pytest.mark.parametrize("make, message", [
    (lambda d: ["--dataset", str(d / "missing")], "dataset='.*missing': no such folder"),
    (lambda d: ["--dataset", str(d)], "no \\*.safetensors shards in the folder"),
    (lambda d: ["--dataset", "digits", "--global-batch-size", "3", "--micro-batch-size", "2"],
     "micro_batch_size=2: expected a divisor of the per-process batch 3"),
    (lambda d: ["--dataset", "digits", "--model", "MPDiT-Q"], "model='MPDiT-Q': unknown model"),
    (lambda d: ["--dataset", "digits", "--precision", "fp8"], "precision='fp8' needs (torchao|a CUDA GPU)"),
])
def test_bad_training_input_is_one_line(tmp_path, make, message):
    args = ["train", "--model", "MPDiT-S", "--steps", "1", "--global-batch-size", "4", "--run-dir", tmp_path / "run",
            "--num-workers", "0"]
    result = run_cli(*args, *make(tmp_path))
    assert re.search(message, result.error), result.err
    assert not (tmp_path / "run").exists()  # checked before anything is created


@pytest.mark.parametrize("args, message", [
    (["--grad-clip=-1"], "grad_clip=-1.0: expected a positive norm, or 0 = off"),
    (["--lr", "nan"], "lr=nan: expected a positive learning rate"),
    (["--time-std", "0"], "time_std=0.0: expected a positive standard deviation"),
    (["--compile-mode", "max-autotune-no-cudagraphs"],
     "compile_mode='max-autotune-no-cudagraphs': applies only with compile=True (--compile)"),
    (["--compile", "--compile-mode", "max-autotune-no-cudagraphs"], "compile_mode='max-autotune-no-cudagraphs': "
     "max-autotune tunes Triton templates for a GPU's matrix products: CUDA only; got device cpu"),
])
def test_bad_training_settings_stop_before_any_work(tmp_path, args, message):
    result = run_cli("train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "1", "--global-batch-size", "4",
                     "--run-dir", tmp_path / "run", *args)
    assert result.error == f"mpdit train: error: {message}"
    assert not (tmp_path / "run").exists()


def folder_contents(folder) -> dict:
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_new_run_into_a_folder_that_holds_a_run_is_refused_and_nothing_in_it_is_touched(digits_run, tmp_path):
    run = copy_run(digits_run.folder, tmp_path / "run")
    before = folder_contents(tmp_path / "run")
    error = run_cli(*TRAIN_ARGS, "--steps", "3", "--run-dir", run).error
    assert f"run_dir={run!r}: holds an earlier run (ckpt-00000001.pt, ckpt-00000002.pt, metrics.jsonl)" in error
    assert "continue it with --resume auto, or train into another --run-dir" in error
    assert folder_contents(tmp_path / "run") == before  # the history, the checkpoints, no lock left
    run_cli(*TRAIN_ARGS, "--steps", "3", "--run-dir", run, "--resume", "auto").ok()  # the way on it names
    (tmp_path / "empty").mkdir()
    run_cli(*TRAIN_ARGS, "--steps", "1", "--run-dir", tmp_path / "empty").ok()  # an empty folder is fine


def test_a_latent_size_that_is_not_the_datas_is_refused_and_what_ran_is_recorded(tmp_path):
    digits = [*TRAIN_ARGS, "--steps", "1", "--image-size", "8"]
    error = run_cli(*digits, "--latent-size", "16", "--run-dir", tmp_path / "run").error
    assert "latent_size=16: for pixel data the latent size is the image size (image_size=8, --image-size)" in error
    assert not (tmp_path / "run").exists()
    run_cli(*digits, "--latent-size", "8", "--run-dir", tmp_path / "agreed").ok()
    state = load_checkpoint(str(tmp_path / "agreed" / "ckpt-00000001.pt"))
    assert state["model_config"]["latent_size"] == state["train_config"]["overrides"]["latent_size"] == 8


@pytest.mark.slow
def test_the_progress_bar_says_when_the_run_draws_its_sample_grid(tmp_path):
    result = run_cli(*TRAIN_ARGS, "--steps", "1", "--global-batch-size", "4", "--run-dir", tmp_path,
                     "--sample-every", "1").ok()
    assert "drawing the sample grid: 100%" in result.err and (tmp_path / "samples" / "step-00000001.png").exists()
