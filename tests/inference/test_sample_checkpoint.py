"""`mpdit sample` for evaluation: exactly N images, image i a function of (seed, i) alone (two
torchrun ranks give what one process gives), streamed to shards, resumable after a kill,
merged into one ADM .npz, evaluated with --eval."""
import json
import os

import numpy as np
import pytest
import torch

from helpers.fake_inception import FakeInception
from helpers.torchrun import one_thread, torchrun
from mpdit.evaluation import evaluator
from mpdit.inference import npz_writer
from mpdit.inference.labels import image_labels
from mpdit.inference.sample_checkpoint import sample_checkpoint as sample_file
from mpdit.inference.settings import SampleSettings
from mpdit.inference.shards import Shards, shard_folder

real_run_method = npz_writer.run_method


def sample_checkpoint(path, out, **settings):
    """mpdit.inference.sample_checkpoint with the settings as keywords, as `mpdit sample`'s options."""
    return sample_file(path, SampleSettings(out, **settings))


@pytest.fixture
def trained(digits_run):
    return digits_run.checkpoint


def test_balanced_labels_are_exact_and_random_ones_do_not_depend_on_n():
    labels = image_labels(10, num_samples=37)
    assert len(labels) == 37 and torch.bincount(labels).tolist() == [4] * 7 + [3] * 3
    assert labels.tolist() == sorted(labels.tolist())  # a block per class: the grid's rows
    drawn = image_labels(10, num_samples=37, random_classes=True, seed=3)
    assert drawn.tolist()[:20] == image_labels(10, num_samples=20, random_classes=True, seed=3).tolist()
    assert image_labels(10, classes=[3, 1], per_class=2).tolist() == [3, 3, 1, 1]


@pytest.mark.parametrize("kwargs, expected", [
    (dict(num_samples=3, per_class=4), "per_class=4, num_samples=3: give one of them"),
    (dict(random_classes=True), "random_classes: draws the class of each of num_samples images"),
    (dict(num_samples=10 ** 14), "num_samples=100000000000000: expected an integer in [1, 10000000]"),
    (dict(num_samples=0), "num_samples=0"),
    (dict(classes=[12], per_class=1), "classes=[12]: expected labels in [0, 9]"),
])
def test_conflicting_or_absurd_label_requests_are_refused(kwargs, expected):
    with pytest.raises(ValueError) as error:
        image_labels(10, **kwargs)
    assert expected in str(error.value)


@pytest.mark.distributed
def test_two_torchrun_ranks_give_the_images_of_one_process(trained, tmp_path):
    """39 images (20 and 19 per rank) of classes in the order asked, another batch size per rank:
    rank 0 writes them in the requested order, each image as one process samples it."""
    with one_thread():
        one = sample_checkpoint(trained, str(tmp_path / "one.npz"), classes=(3, 1, 2), per_class=13, steps=2,
                                batch_size=5, progress=False)
    assert one["count"] == 39
    two = torchrun(["-m", "mpdit", "sample", trained, "--classes", "3,1,2", "--per-class", "13", "--batch-size", "4",
                    "--steps", "2", "--out", tmp_path / "two.npz", "--no-progress"], per_node=2)
    assert two.returncode == 0, two.output[-3000:]
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a["arr_0"].shape == (39, 16, 16, 1) and a["arr_0"].dtype == np.uint8
        assert np.array_equal(a["labels"], b["labels"]) and np.array_equal(a["arr_0"], b["arr_0"])
        assert b["labels"].tolist() == [3] * 13 + [1] * 13 + [2] * 13  # per-sample seeds; the order asked
    assert not os.path.exists(shard_folder(str(tmp_path / "two.npz")))  # merged, then removed
    assert (tmp_path / "two.png").stat().st_size > 0


def test_a_run_killed_after_its_first_shard_resumes_to_the_same_images(trained, tmp_path, monkeypatch):
    whole = tmp_path / "whole.npz"
    sample_checkpoint(trained, str(whole), num_samples=13, steps=2, batch_size=4, progress=False)
    out = str(tmp_path / "killed.npz")
    real_write, calls = Shards.write, []

    def dies_after_one(self, *args):
        if calls:
            raise KeyboardInterrupt  # as a kill would, between shards
        calls.append(real_write(self, *args))
        return calls[-1]

    monkeypatch.setattr(Shards, "write", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        sample_checkpoint(trained, out, num_samples=13, steps=2, batch_size=4, progress=False)
    monkeypatch.setattr(Shards, "write", real_write)
    assert len(Shards(out).files()) == 1 and not os.path.exists(out)
    with pytest.raises(ValueError, match="holds 1 shard.* pass --resume"):
        sample_checkpoint(trained, out, num_samples=13, steps=2, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="sampled with cfg_scale=1.0, this run has cfg_scale=2.0"):
        sample_checkpoint(trained, out, num_samples=13, steps=2, cfg_scale=2.0, resume=True, progress=False)
    sampled = []
    monkeypatch.setattr(npz_writer, "run_method",
                        lambda model, y, *args, **kw: sampled.append(len(y)) or real_run_method(model, y, *args, **kw))
    sample_checkpoint(trained, out, num_samples=13, steps=2, batch_size=3, resume=True, progress=False)
    assert sum(sampled) == 9  # only the images the first shard did not hold (another batch size is fine)
    with np.load(whole) as a, np.load(out) as b:
        assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["labels"], b["labels"])


@pytest.mark.slow
def test_eval_writes_the_metrics_beside_the_samples(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluator, "load_inception", lambda path, device: FakeInception())
    monkeypatch.setenv("MPDIT_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"stand-in")
    ref = tmp_path / "ref.npz"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    pool = FakeInception()(torch.from_numpy(images).permute(0, 3, 1, 2))["pool"].double().detach().numpy()
    np.savez(ref, arr_0=images, mu=pool.mean(0), sigma=np.cov(pool, rowvar=False))
    with pytest.raises(ValueError, match="no such file"):  # checked before sampling
        sample_checkpoint(trained, str(tmp_path / "s.npz"), num_samples=5, steps=2, eval_ref=str(ref),
                          inception_weights=str(tmp_path / "missing.pth"), progress=False)
    result = sample_checkpoint(trained, str(tmp_path / "s.npz"), num_samples=6, steps=2, eval_ref=str(ref),
                               inception_weights=str(weights), progress=False)
    metrics = json.loads((tmp_path / "s.metrics.json").read_text())
    assert result["metrics_file"] == str(tmp_path / "s.metrics.json")
    assert result["metrics"] == {key: metrics[key] for key in ("inception_score", "fid", "sfid", "precision", "recall")}
    assert metrics["num_samples"] == 6 and metrics["fid"] > 0 and metrics["inception_score"] is None
    assert any("grey images" in note for note in metrics["notes"])  # the digits model's one channel, said


@pytest.mark.parametrize("settings, expected", [
    (dict(method="ddim"), "method='ddim': expected one of euler, heun, dopri5, euler_maruyama, ddpm"),
    (dict(batch_size=0), "batch_size=0: expected a positive integer"),
    (dict(latents_only=True, eval_ref="r.npz"), "--latents-only with --eval"),
])
def test_settings_are_refused_before_anything_is_read(tmp_path, settings, expected):
    with pytest.raises(ValueError, match=expected):
        sample_checkpoint(str(tmp_path / "missing.pt"), str(tmp_path / "s.npz"), **settings)  # never opened
