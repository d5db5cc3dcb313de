"""One training step for the trainer and the bench: the step `mpdit bench` times leaves the same
weights and EMA as the step `mpdit train` takes, from the same batch (CPU, bit for bit)."""
import torch

from mpdit.bench import model_cases
from mpdit.bench.executor import Ceilings
from mpdit.bench.plan import BenchRequest, Case
from mpdit.bench.presets import ModelSpec
from mpdit.training.config import TrainConfig
from mpdit.training.trainer import build
from mpdit.world import World

SPEC = ModelSpec("MPDiT-S/8px", "MPDiT-S", {"latent_size": 8, "stages": ((4, 1), (2, 1))})


class LatentFolder(list):
    """What trainer.build reads of a latent dataset: its items' shape and its classes."""

    num_classes = 1000


def test_the_bench_times_the_trainers_step(monkeypatch, tmp_path):
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 4, 8, 8, generator=generator), torch.randint(0, 1000, (2,), generator=generator)
    monkeypatch.setattr(model_cases, "latent_batches", lambda model, batch, device: [(x, None, y)] * 3)
    built = []
    real_step_for = model_cases.train_step_for
    monkeypatch.setattr(model_cases, "train_step_for", lambda *args: built.append(real_step_for(*args)) or built[-1])

    def once(fn, device, reps, warmup):  # the timed step, run once instead of timed
        fn()
        return dict.fromkeys(("median_ms", "p20_ms", "p80_ms", "warmup_ms"), 1.0)

    monkeypatch.setattr(model_cases, "time_steps", once)

    class Rows:
        def add(self, *row):
            pass

    plan = BenchRequest("tiny", device="cpu", out=str(tmp_path), models=[SPEC.label]).plan()  # batch 2, fp32
    assert plan.specs == (SPEC,) and plan.preset.train_batch == 2
    model_cases.bench_train(plan, Case("train", SPEC, "torch"), Rows(), Ceilings(1.0, 1.0, {SPEC.label: 1.0}))
    benched = built[0]

    config = TrainConfig(model=SPEC.name, dataset=str(tmp_path), steps=1, global_batch_size=2, run_dir=str(tmp_path),
                         kernel_backend="torch", precision="fp32", num_workers=0, overrides=dict(SPEC.overrides))
    trained = build(config, World(), LatentFolder([(x[0], y[0])])).train_step
    before = {name: tensor.clone() for name, tensor in trained.model.state_dict().items()}
    trained([(x, y)], 0)

    for module in ("model", "ema"):
        ours, theirs = getattr(benched, module).state_dict(), getattr(trained, module).state_dict()
        assert ours.keys() == theirs.keys()
        for name, tensor in theirs.items():
            assert torch.equal(ours[name], tensor), f"{module}.{name}"
    moved = [name for name, tensor in trained.model.state_dict().items() if not torch.equal(tensor, before[name])]
    assert moved  # the step changed weights: the equality above is not two untouched models
