"""Training backend on the CPU: resume equivalence, torchrun, crash safety, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mpdit import create_model
from mpdit.io import export_ema, load_checkpoint
from mpdit.training import checkpoint
from mpdit.training.checkpoint import CheckpointError
from mpdit.training.data import DataPosition, DigitsDataset, LatentShards, ResumableSampler
from mpdit.training.config import TrainConfig
from mpdit.training.trainer import train
from model_utils import tiny_vae

TINY = {"stages": ((4, 1), (2, 1))}  # MPDiT-S width, two blocks: quick on a CPU


def config(run_dir, steps, **kwargs):
    return TrainConfig(model="MPDiT-S", dataset="digits", steps=steps, global_batch_size=8, run_dir=str(run_dir),
                       checkpoint_every=2, log_every=1, sample_every=0, num_workers=0, overrides=dict(TINY),
                       **kwargs)


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


def test_checkpoint_keys_and_ema_export(tmp_path):
    train(config(tmp_path, steps=2))
    state = load_checkpoint(checkpoint.latest(str(tmp_path)))
    assert {"model", "ema", "optimizer", "step", "rng", "data", "train_config", "model_config"} <= set(state)
    from safetensors.torch import load_file

    exported = load_file(export_ema(state, str(tmp_path / "ema.safetensors")))
    assert set(exported) == set(state["ema"])


# Each rank trains, then saves the weights it holds: DDP must leave them bit-identical.
TWO_RANKS = """
import sys, torch
from mpdit.training.config import TrainConfig
from mpdit.world import close_world, init_world
from mpdit.training.trainer import fit
world = init_world()
config = TrainConfig(model="MPDiT-S", dataset="digits", steps=3, global_batch_size=8, run_dir=sys.argv[1],
                     num_workers=0, sample_every=0, overrides={"stages": ((4, 1), (2, 1))})
run, _ = fit(config, world)
torch.save(run.train_step.model.state_dict(), f"{sys.argv[1]}/rank{world.rank}.pt")
close_world(world)
"""


def test_torchrun_two_processes_hold_identical_weights(tmp_path):
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", str(script),
           str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    assert load_checkpoint(checkpoint.latest(str(tmp_path)))["step"] == 3
    assert rank0["final_layer.linear.weight"].abs().sum() > 0  # it trained (the layer starts at zero)


def test_sigkill_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path):
    """Kill the trainer while a checkpoint file is growing (a write in progress): the latest
    complete checkpoint must still load. A trainer writing in place would leave a torn file."""
    cmd = [sys.executable, "-m", "mpdit", "train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits",
           "--steps", "1000", "--global-batch-size", "8", "--run-dir", str(tmp_path), "--checkpoint-every", "1",
           "--num-workers", "0", "--sample-every", "0"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_mid_write = False
    try:
        deadline, sizes = time.time() + 120, {}
        while time.time() < deadline and not killed_mid_write:
            for path in tmp_path.glob("ckpt-*"):
                try:
                    size = path.stat().st_size
                except FileNotFoundError:  # renamed between the listing and the stat
                    continue
                if len(sizes) > 3 and sizes.get(path, size) != size:  # growing: a write is under way
                    process.send_signal(signal.SIGKILL)
                    killed_mid_write = True
                    break
                sizes[path] = size
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert killed_mid_write
    path = checkpoint.latest(str(tmp_path))
    assert path is not None
    state = load_checkpoint(path)  # complete, whatever the kill interrupted
    assert state["step"] >= 1


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mpdit", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("make, message", [
    (lambda d: ["--dataset", str(d / "missing")], "dataset='.*missing': no such folder"),
    (lambda d: ["--dataset", str(d)], "no \\*.safetensors shards in the folder"),
    (lambda d: ["--dataset", "digits", "--global-batch-size", "3", "--micro-batch-size", "2"],
     "micro_batch_size=2: expected a divisor of the per-process batch 3"),
    (lambda d: ["--dataset", "digits", "--model", "MPDiT-Q"], "model='MPDiT-Q': unknown model"),
    (lambda d: ["--dataset", "digits", "--precision", "fp8"], "precision='fp8' needs (torchao|a CUDA GPU)"),
])
def test_bad_training_input_is_one_line(tmp_path, make, message):
    args = ["train", "--model", "MPDiT-S", "--steps", "1", "--global-batch-size", "4", "--run-dir",
            str(tmp_path / "run"), "--num-workers", "0"]
    result = run_cli(*args, *make(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    import re

    assert re.search(message, result.stderr), result.stderr


def test_resuming_another_models_checkpoint_is_refused(tmp_path):
    train(config(tmp_path, steps=1))
    result = run_cli("train", "--model", "MPDiT-S", "--stages", "4:2,2:1", "--dataset", "digits", "--steps", "2",
                     "--global-batch-size", "8", "--run-dir", str(tmp_path), "--resume", "auto", "--num-workers", "0")
    assert result.returncode == 2 and "it is for another model" in result.stderr and "stages" in result.stderr


def test_truncated_and_missing_checkpoints(tmp_path):
    train(config(tmp_path, steps=2))
    path = checkpoint.latest(str(tmp_path))
    data = open(path, "rb").read()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable .* truncated"):
        load_checkpoint(str(broken))
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    result = run_cli("sample", "--checkpoint", str(broken), "--out", str(tmp_path / "s.npz"))
    assert result.returncode == 2 and "truncated" in result.stderr and result.stderr.count("\n") == 1


def test_shards_are_validated(tmp_path):
    from safetensors.torch import save_file

    save_file({"latents": torch.randn(4, 4, 8, 8), "labels": torch.tensor([0, 1, 2, 3])}, str(tmp_path / "a.safetensors"))
    save_file({"latents": torch.randn(4, 4, 4, 4), "labels": torch.tensor([0, 1, 2, 3])}, str(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match="latent shape \\(4, 4, 4\\) differs"):
        LatentShards(str(tmp_path))
    os.remove(tmp_path / "b.safetensors")
    save_file({"latents": torch.randn(2, 4, 8, 8), "labels": torch.tensor([0, 1000])}, str(tmp_path / "c.safetensors"))
    with pytest.raises(ValueError, match="labels in \\[0, 1000\\], expected \\[0, 999\\]"):
        LatentShards(str(tmp_path))


def _steps(size, global_batch, micro, world, steps, start=DataPosition()):
    """The sets of items each of `steps` optimizer steps sees, over all ranks."""
    ranks = [iter(ResumableSampler(size, global_batch, micro, r, world, seed=3, start=start)) for r in range(world)]
    return [sorted(next(ranks[r]) for r in range(world) for _ in range(global_batch // world)) for _ in range(steps)]


def test_sampler_steps_are_the_same_global_batches_on_any_world_and_micro_batch():
    """22 items, global batch 4: 5 steps per epoch (2 items left out), then a new permutation."""
    one = _steps(22, 4, micro=4, world=1, steps=12)
    assert sorted(item for step in one[:5] for item in step) != list(range(22))  # 20 of the 22
    assert len({item for step in one[:5] for item in step}) == 20
    assert one[5:10] != one[:5]  # epoch 1: another order
    for world, micro in ((2, 1), (2, 2), (4, 1)):
        assert _steps(22, 4, micro, world, steps=12) == one, (world, micro)


def test_sampler_resumes_at_a_position_in_global_samples():
    one = _steps(22, 4, micro=2, world=1, steps=12)
    for done in (3, 5, 7):
        position = DataPosition().advance(done, 4, 22)
        assert _steps(22, 4, micro=1, world=2, steps=12 - done, start=position) == one[done:], done
    assert DataPosition().advance(7, 4, 22) == DataPosition(1, 8)
    assert DataPosition(0, 12).advance(2, 4, 22) == DataPosition(1, 0)  # 16 + 4 > 22: the epoch ends
    with pytest.raises(ValueError, match="global batch 6: expected a multiple of 4 processes x micro-batch 1"):
        ResumableSampler(22, 6, 1, world=4)


def test_digits_dataset():
    data = DigitsDataset(16)
    image, label = data[5]
    assert len(data) == 1797 and image.shape == (1, 16, 16) and -1 <= image.min() and image.max() <= 1
    assert 0 <= label < 10


def test_sample_command_writes_npz_and_grid(tmp_path):
    train(config(tmp_path, steps=1))
    out = tmp_path / "samples.npz"
    result = run_cli("sample", "--checkpoint", checkpoint.latest(str(tmp_path)), "--classes", "0,1,2",
                     "--per-class", "2", "--cfg-scale", "2", "--steps", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "batch: model call 3/3" in result.stderr  # a long batch shows its progress, not only "0/1"
    import numpy as np

    arrays = np.load(out)
    assert arrays["arr_0"].shape == (6, 16, 16, 1) and arrays["arr_0"].dtype == np.uint8
    assert list(arrays["labels"]) == [0, 0, 1, 1, 2, 2]
    assert (tmp_path / "samples.png").stat().st_size > 0
    bad = run_cli("sample", "--checkpoint", checkpoint.latest(str(tmp_path)), "--classes", "12", "--out", str(out))
    assert bad.returncode == 2 and "classes=[12]" in bad.stderr
    pixels = run_cli("sample", checkpoint.latest(str(tmp_path)), "--latents-only", "--out", str(tmp_path / "l.npz"))
    assert pixels.returncode == 2 and "--latents-only: checkpoint=" in pixels.stderr and "pixel-space" in pixels.stderr
    both = run_cli("sample", checkpoint.latest(str(tmp_path)), "--latents-only", "--eval", str(out),
                   "--out", str(tmp_path / "l.npz"))
    assert both.returncode == 2 and "--latents-only with --eval" in both.stderr


def test_extract_train_and_decode_latents(tmp_path):
    pytest.importorskip("diffusers")
    from PIL import Image

    for label, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        os.makedirs(tmp_path / "images" / f"class{label}")
        for i in range(4):  # non-square sizes exercise the ADM centre crop
            pixels = torch.randint(0, 255, (20 + i, 24, 3), dtype=torch.uint8)
            pixels[..., label * 2] = colour[label * 2]
            Image.fromarray(pixels.numpy()).save(tmp_path / "images" / f"class{label}" / f"{i}.png")
    vae = tiny_vae(tmp_path / "vae")
    result = run_cli("extract-latents", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "latents"),
                     "--vae", vae, "--image-size", "16", "--flip", "--normalisation", "channel")
    assert result.returncode == 0, result.stderr[-2000:]
    shards = LatentShards(str(tmp_path / "latents"), num_classes=2)
    assert len(shards) == 16 and shards[0][0].shape == (4, 8, 8)  # 8 images + flipped copies; /2 downsampling
    assert sorted(shards.labels.tolist()) == [0] * 8 + [1] * 8
    run = tmp_path / "run"
    result = run_cli("train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", str(tmp_path / "latents"),
                     "--steps", "1", "--global-batch-size", "4", "--run-dir", str(run), "--num-workers", "0",
                     "--sample-every", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "decoded.npz"
    result = run_cli("sample", "--checkpoint", checkpoint.latest(str(run)), "--classes", "0,1", "--steps", "2",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    import numpy as np

    assert np.load(out)["arr_0"].shape == (2, 16, 16, 3)  # decoded back to pixels
    # Where no VAE is at hand: keep the latents, decode them later to the same images
    os.rename(vae, str(tmp_path / "vae-elsewhere"))
    kept = tmp_path / "latents-only.npz"
    result = run_cli("sample", checkpoint.latest(str(run)), "--classes", "0,1", "--steps", "2", "--out", str(kept),
                     "--latents-only")
    assert result.returncode == 0, result.stderr[-2000:]
    latents = np.load(kept)["latents"]
    assert latents.shape == (2, 4, 8, 8) and latents.dtype == np.float32 and not (tmp_path / "latents-only.png").exists()
    import mpdit
    from mpdit.io.images import to_uint8
    from mpdit.models.vae import load_vae

    info = load_checkpoint(checkpoint.latest(str(run)))["latents"]
    pixels = mpdit.decode(torch.from_numpy(latents), info, load_vae(str(tmp_path / "vae-elsewhere"), "cpu"))
    assert np.abs(to_uint8(pixels).numpy().astype(int) - np.load(out)["arr_0"]).max() <= 1
    result = run_cli("sample", checkpoint.latest(str(run)), "--classes", "0,1", "--steps", "2", "--out", str(out))
    last = result.stderr.strip().splitlines()[-1]  # (torchao and diffusers may print notices first)
    assert result.returncode == 2 and last.startswith("mpdit sample: ") and "vae-elsewhere" not in last
    assert f"vae={vae!r}: no such folder" in last and "Traceback" not in result.stderr


def test_extract_rejects_bad_folders(tmp_path):
    result = run_cli("extract-latents", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no such folder" in result.stderr
    os.makedirs(tmp_path / "empty" / "cls")
    result = run_cli("extract-latents", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no images in class sub-folders" in result.stderr


def test_fsdp2_trains_saves_whole_weights_and_resumes(tmp_path):
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519", "-m", "mpdit",
            "train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits", "--global-batch-size", "8",
            "--micro-batch-size", "2", "--run-dir", str(tmp_path), "--num-workers", "0", "--parallel", "fsdp",
            "--checkpoint-every", "2", "--sample-every", "0"]
    first = subprocess.run(base + ["--steps", "2"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    state = load_checkpoint(checkpoint.latest(str(tmp_path)))
    plain = create_model("MPDiT-S", stages=((4, 1), (2, 1)), in_channels=1, latent_size=16, num_classes=10)
    assert {k: tuple(v.shape) for k, v in state["model"].items()} == \
        {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert state["optimizer"]["state"]  # the optimizer's moments are saved too
    second = subprocess.run(base + ["--steps", "4", "--resume", "auto"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = load_checkpoint(checkpoint.latest(str(tmp_path)))
    assert resumed["step"] == 4 and resumed["data"] == {"epoch": 0, "offset": 32}  # 4 steps x 8 images
    assert not torch.equal(resumed["model"]["blocks.0.attn.qkv.weight"], state["model"]["blocks.0.attn.qkv.weight"])


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


def test_export_ema_command(tmp_path):
    train(config(tmp_path, steps=1))
    out = tmp_path / "ema.safetensors"
    result = run_cli("export-ema", "--checkpoint", checkpoint.latest(str(tmp_path)), "--out", str(out))
    assert result.returncode == 0 and out.stat().st_size > 0
    bad = run_cli("export-ema", "--checkpoint", checkpoint.latest(str(tmp_path)), "--out", str(tmp_path / "x.bin"))
    assert bad.returncode == 2 and "expected a path ending in .safetensors" in bad.stderr


def test_sampling_shards_across_torchrun_ranks(tmp_path):
    """Two ranks each sample their share; rank 0 writes them in the requested order."""
    train(config(tmp_path, steps=1))
    path = checkpoint.latest(str(tmp_path))
    args = ["sample", "--checkpoint", path, "--classes", "3,1,2", "--per-class", "1", "--steps", "2"]
    single = run_cli(*args, "--out", str(tmp_path / "one.npz"))
    assert single.returncode == 0, single.stderr[-2000:]
    shared = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             "--master_port=29521", "-m", "mpdit", *args, "--out", str(tmp_path / "two.npz")],
                            capture_output=True, text=True, timeout=300)
    assert shared.returncode == 0, shared.stderr[-3000:]
    import numpy as np

    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert list(two["labels"]) == [3, 1, 2]
    assert (one["arr_0"] == two["arr_0"]).all()  # per-sample seeds: the split does not change the images


def test_a_checkpoint_counting_micro_batches_per_process_resumes_at_its_sample(tmp_path):
    """Checkpoints of the previous version kept `batches_consumed` per process: 60 micro-batches
    of 2 on 2 processes of 1,797 digits (449 micro-batches an epoch) is sample 240 of epoch 0."""
    from mpdit.training.trainer import data_position

    state = {"data": {"batches_consumed": 60}, "rng": {"generators": [None, None]},
             "train_config": {"micro_batch_size": 2, "global_batch_size": 8}}
    assert data_position(state, 1797) == DataPosition(0, 240)
    state["data"]["batches_consumed"] = 450
    assert data_position(state, 1797) == DataPosition(1, 4)
    assert data_position({"data": {"epoch": 3, "offset": 16}}, 1797) == DataPosition(3, 16)


def test_ema_update_rule():
    from mpdit.training.step import update_ema

    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.nn.init.zeros_(ema.weight)
    torch.nn.init.zeros_(ema.bias)
    model.bias.requires_grad_(False)  # frozen parameters (position tables) are not averaged
    update_ema(ema, model, decay=0.9)
    torch.testing.assert_close(ema.weight, 0.1 * model.weight)
    assert torch.count_nonzero(ema.bias) == 0


def test_the_progress_bar_says_when_the_run_draws_its_sample_grid(tmp_path):
    result = run_cli("train", "--model", "MPDiT-S", "--stages", "4:1,2:1", "--dataset", "digits", "--steps", "1",
                     "--global-batch-size", "4", "--run-dir", str(tmp_path), "--num-workers", "0",
                     "--sample-every", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "drawing the sample grid: 100%" in result.stderr and (tmp_path / "samples" / "step-00000001.png").exists()


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
    import dataclasses

    fields = {spec.name for spec in dataclasses.fields(TrainConfig)}
    assert fields - set(vars(args)) == {"overrides"}  # model comes from the shared --model option


@pytest.mark.parametrize("mode", ["default", "max-autotune-no-cudagraphs"])
def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch, mode):
    from mpdit.training.data import open_dataset
    from mpdit.world import World
    from mpdit.training.trainer import build

    modes = []
    monkeypatch.setattr(torch, "compile", lambda forward, mode: modes.append(mode) or forward)
    settings = config(tmp_path, steps=1, compile=True, compile_mode=mode)
    build(settings, World(), open_dataset("digits", settings.image_size))  # fit() refuses autotune on a CPU first
    assert modes == [mode]


def test_an_optimizer_state_numbered_by_an_earlier_version_loads_by_name():
    from mpdit.training.distributed import by_name, full_state, load_full_state

    torch.manual_seed(0)
    model = create_model("MPDiT-S", stages=((4, 1), (2, 1)), in_channels=1, latent_size=16, num_classes=10)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(torch.randn(2, 1, 16, 16), torch.rand(2), torch.tensor([1, 2])).square().mean().backward()
    optimizer.step()
    numbered = optimizer.state_dict()
    named = full_state(model, model, optimizer, sharded=False)[2]
    assert by_name(numbered, model)["param_groups"] == named["param_groups"]
    assert by_name(named, model) is named
    fresh = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    load_full_state({"model": model.state_dict(), "ema": model.state_dict(), "optimizer": numbered}, model, model,
                    fresh, sharded=False)
    for index, moments in numbered["state"].items():
        assert all(torch.equal(fresh.state_dict()["state"][index][k], v) for k, v in moments.items())
