"""`mpdit train --eval-every`: the EMA sampled and evaluated during training into metrics.jsonl, and
its settings checked before any step."""
import json

import pytest

from helpers.runs import digits_config
from mpdit.training.trainer import train


def test_training_evaluates_its_ema_into_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    final = train(digits_config(run, steps=2, checkpoint_every=2, eval_every=1, eval_ref="digits", eval_samples=12,
                                eval_steps=2))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_fd_digits" in r]
    assert [r["step"] for r in evals] == [1, 2] and all(r["eval_samples"] == 12 for r in evals)
    assert all(r["eval_fd_digits"] > r["eval_fd_digits_floor"] > 0 for r in evals)  # an untrained model: far
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["step-00000001.png", "step-00000002.png"]
    assert final["step"] == 2


@pytest.mark.parametrize("settings, expected", [
    (dict(eval_every=5), "eval_every=5: needs eval_ref"),
    (dict(eval_ref="digits"), "eval_ref='digits': used only with eval_every"),
    (dict(eval_every=5, eval_ref="missing.npz"), "missing.npz: no such file"),
    (dict(eval_every=5, eval_ref="digits", eval_samples=0), "eval_samples=0: expected an integer >= 1"),
])
def test_training_evaluation_settings_are_checked_before_training(tmp_path, settings, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        train(digits_config(tmp_path / "run", steps=1, **settings))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
