"""Training under torchrun on one machine (gloo): DDP leaves every rank's weights bit-identical;
FSDP2 trains, saves whole (unsharded) weights and its optimizer state, and resumes."""
import pytest
import torch

from helpers.runs import TRAIN_ARGS
from helpers.torchrun import torchrun
from mpdit import create_model
from mpdit.io import load_checkpoint
from mpdit.training import checkpoint

pytestmark = pytest.mark.distributed

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
    launch = torchrun([script, tmp_path], per_node=2)
    assert launch.returncode == 0, launch.output[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)
    assert load_checkpoint(checkpoint.latest(str(tmp_path)))["step"] == 3
    assert rank0["final_layer.linear.weight"].abs().sum() > 0  # it trained (the layer starts at zero)


def test_fsdp2_trains_saves_whole_weights_and_resumes(tmp_path):
    base = ["-m", "mpdit", *TRAIN_ARGS, "--micro-batch-size", "2", "--run-dir", tmp_path, "--parallel", "fsdp",
            "--checkpoint-every", "2"]
    first = torchrun(base + ["--steps", "2"], per_node=2)
    assert first.returncode == 0, first.output[-3000:]
    state = load_checkpoint(checkpoint.latest(str(tmp_path)))
    plain = create_model("MPDiT-S", stages=((4, 1), (2, 1)), in_channels=1, latent_size=16, num_classes=10)
    assert {k: tuple(v.shape) for k, v in state["model"].items()} == \
        {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert state["optimizer"]["state"]  # the optimizer's moments are saved too
    second = torchrun(base + ["--steps", "4", "--resume", "auto"], per_node=2)
    assert second.returncode == 0, second.output[-3000:]
    resumed = load_checkpoint(checkpoint.latest(str(tmp_path)))
    assert resumed["step"] == 4 and resumed["data"] == {"epoch": 0, "offset": 32}  # 4 steps x 8 images
    assert not torch.equal(resumed["model"]["blocks.0.attn.qkv.weight"], state["model"]["blocks.0.attn.qkv.weight"])
