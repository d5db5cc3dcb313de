"""The README against the engine: its set-up commands are CI's, what it says each command prints
is what the commands print, its quick start says what the training writes."""
import json
import re
from pathlib import Path

import pytest
import torch

from helpers.cli import run_cli
from helpers.runs import TRAIN_ARGS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    install_and_run, install_and_test = blocks[0], blocks[1]
    assert install_and_run.endswith("mpdit bench")
    assert "pytest" in install_and_test
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


def json_commands() -> list:
    """The commands the README says print their result as one JSON line."""
    sentence = re.search(r"On stdout, (.*?)\s+print their result as one JSON line", README, flags=re.S)
    assert sentence, "the README no longer says which commands print JSON"
    return re.findall(r"`([^`]+)`", sentence.group(1))


@pytest.mark.slow
def test_the_commands_the_readme_says_print_json_print_one_json_line(digits_run, tmp_path):
    """Each, run on small inputs, prints exactly one line on stdout, a JSON object."""
    from PIL import Image

    from helpers.models import official_state, tiny_vae
    from mpdit.compat import DiT_models
    from mpdit.evaluation.inception import WEIGHTS_FILE, InceptionV3

    images = tmp_path / "images" / "a"
    images.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(torch.randint(0, 255, (16, 16, 3), dtype=torch.uint8).numpy()).save(images / f"{i}.png")
    torch.save(official_state(DiT_models["DiT-S/8"], input_size=16), tmp_path / "dit.pt")
    torch.save(InceptionV3().state_dict(), tmp_path / WEIGHTS_FILE)
    argv = {
        "train": [*TRAIN_ARGS, "--steps", "1", "--run-dir", tmp_path / "run"],
        "sample": ["sample", digits_run.checkpoint, "--classes", "1", "--steps", "1", "--out", tmp_path / "s.npz"],
        "export-ema": ["export-ema", digits_run.checkpoint, "--out", tmp_path / "e.safetensors"],
        "convert": ["convert", "--from", "dit", "--model", "DiT-S/8", tmp_path / "dit.pt", "--out",
                    tmp_path / "c.safetensors"],
        "extract-latents": ["extract-latents", "--images", tmp_path / "images", "--out", tmp_path / "latents",
                            "--vae", tiny_vae(tmp_path / "vae"), "--image-size", "16"],
        "eval --make-ref": ["eval", "--make-ref", tmp_path / "images", "--out", tmp_path / "ref.npz",
                            "--inception-weights", tmp_path / WEIGHTS_FILE, "--no-progress", "--device", "cpu"],
    }
    assert sorted(json_commands()) == sorted(argv)
    for command, args in argv.items():
        lines = run_cli(*args).ok().out.splitlines()
        assert len(lines) == 1 and isinstance(json.loads(lines[0]), dict), (command, lines)


def test_the_quick_start_says_what_its_training_writes():
    """Its copy-paste `mpdit train` draws a sample grid at the end unless --sample-every 0."""
    quick_start = README.split("## Quick start", 1)[1]
    block, after = re.search(r"```bash\n(.*?)\n```\n(.*?)```", quick_start, flags=re.S).groups()
    command = block.split("\nmpdit ")[0]
    assert command.startswith("mpdit train ")
    assert "--sample-every 0" in command or "runs/digits/samples/" in after
