"""The trainer on the CPU: resume equals an uninterrupted run, what a checkpoint holds, the EMA, a
non-finite loss, and the options generated from TrainConfig."""
import dataclasses

import pytest
import torch

from helpers.runs import digits_config
from mpdit.io import export_ema, load_checkpoint
from mpdit.training import checkpoint
from mpdit.training.config import TrainConfig, TrainingEvaluation
from mpdit.training.step import ema_decay_at
from mpdit.training.trainer import train


def config(run_dir, steps, **settings):
    return digits_config(run_dir, steps, **{"checkpoint_every": 2, **settings})


def test_resume_equals_an_uninterrupted_run(tmp_path):
    """N steps, stop, resume, N more == 2N steps: bit-identical weights, EMA and optimizer state."""
    train(config(tmp_path / "a", steps=3, micro_batch_size=4))
    train(config(tmp_path / "a", steps=6, micro_batch_size=4, resume="auto"))
    train(config(tmp_path / "b", steps=6, micro_batch_size=4))
    resumed = load_checkpoint(checkpoint.latest(str(tmp_path / "a")))
    straight = load_checkpoint(checkpoint.latest(str(tmp_path / "b")))
    assert resumed["step"] == straight["step"] == 6
    for key in ("model", "ema"):
        for name, tensor in straight[key].items():
            assert torch.equal(resumed[key][name], tensor), f"{key}.{name}"
    for a, b in zip(resumed["optimizer"]["state"].values(), straight["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in b)
    assert resumed["data"] == straight["data"] == {"epoch": 0, "offset": 48}  # 6 steps x 8 images
    assert not any(name.startswith(("module.", "_orig_mod.")) for name in straight["model"])


def test_checkpoint_keys_and_ema_export(digits_run, tmp_path):
    state = load_checkpoint(digits_run.checkpoint)
    assert {"model", "ema", "optimizer", "step", "rng", "data", "train_config", "model_config"} <= set(state)
    from safetensors.torch import load_file

    exported = load_file(export_ema(state, str(tmp_path / "ema.safetensors")))
    assert set(exported) == set(state["ema"])


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_non_finite_loss_stops_naming_the_step_or_is_skipped(tmp_path, monkeypatch, mode):
    import mpdit.training.step as step
    from mpdit.training.step import TrainingError

    calls = {"n": 0}
    real_loss = step.flow_matching_loss

    def poisoned_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(step, "flow_matching_loss", poisoned_loss)
    run = config(tmp_path, steps=3, on_nonfinite=mode)
    if mode == "stop":
        with pytest.raises(TrainingError, match="non-finite loss nan .* at step 2"):
            train(run)
        assert checkpoint.latest(str(tmp_path)) is None  # no NaN step was saved (checkpoint_every=2)
    else:
        final = train(run)
        assert final["skipped_steps"] == 1 and final["step"] == 3
        state = load_checkpoint(checkpoint.latest(str(tmp_path)))
        assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_images_per_s_times_training_alone_not_the_checkpoints_between(tmp_path, monkeypatch):
    """A checkpoint (or grid, or evaluation) after a logged step is not charged to the next window:
    here each save moves the trainer's clock on by 1000 s."""
    import json

    from mpdit.training import trainer

    offset, real = [0.0], trainer.time.perf_counter
    save = trainer.save
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: real() + offset[0])
    monkeypatch.setattr(trainer, "save", lambda run: (save(run), offset.__setitem__(0, offset[0] + 1000)))
    train(config(tmp_path / "run", steps=4, checkpoint_every=1))
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        speeds = [json.loads(line)["images_per_s"] for line in f if '"final"' not in line]
    assert len(speeds) == 4 and min(speeds) > 1  # 8 images in a window that held a save: below 0.008


def test_ema_update_rule():
    from mpdit.training.step import update_ema

    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.nn.init.zeros_(ema.weight)
    torch.nn.init.zeros_(ema.bias)
    model.bias.requires_grad_(False)  # frozen parameters (position tables) are not averaged
    update_ema(ema, model, decay=0.9)
    torch.testing.assert_close(ema.weight, 0.1 * model.weight)
    assert torch.count_nonzero(ema.bias) == 0


@pytest.mark.parametrize("step, decay", [(0, 0.1), (10, 0.55), (1000, 1001 / 1010), (10 ** 6, 0.9999)])
def test_ema_warmup_follows_the_weights_early_then_settles(step, decay):
    assert ema_decay_at(digits_config("r", 1), step) == pytest.approx(decay)
    assert ema_decay_at(digits_config("r", 1, ema_warmup=False), step) == 0.9999


def test_trainer_uses_the_configured_ema_decay(tmp_path):
    train(config(tmp_path, steps=2, ema_decay=0.0))  # decay 0: the EMA is the model itself
    state = load_checkpoint(checkpoint.latest(str(tmp_path)))
    for name, tensor in state["model"].items():
        torch.testing.assert_close(state["ema"][name], tensor, msg=name)


def test_train_options_are_generated_from_train_config():
    """Each default lives in TrainConfig: the parsed command line with only the required
    options is the dataclass with its defaults, and every field but two is an option."""
    from mpdit.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--model", "MPDiT-S", "--dataset", "digits", "--steps", "5",
                                      "--global-batch-size", "4", "--run-dir", "r", "--weight-decay", "0.05",
                                      "--compile"])
    config = config_from_args(TrainConfig, args, model=args.model, overrides={})
    assert config == TrainConfig(model="MPDiT-S", dataset="digits", steps=5, global_batch_size=4, run_dir="r",
                                 weight_decay=0.05, compile=True)
    fields = {spec.name for spec in dataclasses.fields(TrainConfig)}
    assert fields - set(vars(args)) == {"overrides", "evaluation"}  # model comes from the shared --model option
    grouped = {f"eval_{spec.name}" for spec in dataclasses.fields(TrainingEvaluation)}  # --eval-every, ...
    assert grouped <= set(vars(args)) and config.evaluation == TrainingEvaluation()


@pytest.mark.parametrize("mode", ["default", "max-autotune-no-cudagraphs"])
def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch, mode):
    from mpdit.data import open_dataset
    from mpdit.training.trainer import build
    from mpdit.world import World

    modes = []
    monkeypatch.setattr(torch, "compile", lambda forward, mode: modes.append(mode) or forward)
    settings = config(tmp_path, steps=1, compile=True, compile_mode=mode)
    build(settings, World(), open_dataset("digits", settings.image_size))  # fit() refuses autotune on a CPU first
    assert modes == [mode]


def test_rank_0_keeps_a_log_txt_of_the_run_that_a_resume_continues(tmp_path, capsys):
    """DiT's log.txt: what the run said on stderr and each logged step, with the time; resumed,
    the file grows (the folder's history), never starts over."""
    run_dir = tmp_path / "run"
    train(config(run_dir, steps=2))
    first = (run_dir / "log.txt").read_text().splitlines()
    assert "MPDiT-S, " in first[0] and "steps 0 -> 2" in first[0] and first[0].startswith("[20")
    assert [line.split("] ", 1)[1].split(":")[0] for line in first[1:]] == ["step 1", "step 2", "finished at step 2"]
    assert "loss " in first[1] and "images/s" in first[1]
    train(config(run_dir, steps=3, resume="auto"))
    lines = (run_dir / "log.txt").read_text().splitlines()
    assert lines[:len(first)] == first
    said = capsys.readouterr().err
    resumed = next(line for line in lines[len(first):] if "resuming from" in line)
    assert resumed.split("] ", 1)[1] in said  # the same words on stderr
    assert lines[-1].endswith("finished at step 3")
