"""mpdit convert (official <-> engine, bit-exact), mpdit sample and train --init on converted files,
and every bad checkpoint case as one line."""
import argparse

import numpy as np
import pytest
import torch

import mpdit
from helpers.cli import run_cli
from helpers.models import official_state
from mpdit.compat import DiT_models, MPDiT_models, SiT_models
from mpdit.compat.sampling import SiTVelocity
from mpdit.diffusion.sampling import sample
from mpdit.training.config import TrainConfig
from mpdit.training.trainer import train


def train_py_checkpoint(path, ema, prefix=""):
    """What the official train.py scripts save: model, ema, opt, args (a Namespace)."""
    model = {prefix + key: value + 1 for key, value in ema.items()}
    torch.save({"model": model, "ema": {prefix + k: v for k, v in ema.items()}, "opt": {},
                "args": argparse.Namespace(model="x", epochs=1)}, path)
    return path


SLOW = pytest.mark.slow  # a B-size model: two train.py checkpoints of about 1 GB written and read
CASES = [
    pytest.param("dit", "DiT-S/8", DiT_models["DiT-S/8"], {"input_size": 16}, "", id="DiT-S/8"),
    pytest.param("sit", "SiT-S/8", SiT_models["SiT-S/8"], {"input_size": 16, "learn_sigma": True}, "", id="SiT-S/8"),
    pytest.param("mpdit-ref", "MPDiT-B/4x", MPDiT_models["MPDiT-B/4x"], {"input_size": 16}, "_orig_mod.",
                 id="MPDiT-B/4x", marks=SLOW),
    pytest.param("mpdit-ref", "MPDiTv2-B", MPDiT_models["MPDiTv2-B"], {"input_size": 16, "time_emb": "mlp"}, "",
                 id="MPDiTv2-B", marks=SLOW),
]


@pytest.mark.parametrize("family, name, factory, kwargs, prefix", CASES)
def test_convert_there_and_back_is_bit_exact(tmp_path, family, name, factory, kwargs, prefix):
    ema = official_state(factory, **kwargs)
    ckpt = train_py_checkpoint(tmp_path / "0001000.pt", ema, prefix)
    engine = tmp_path / "engine.safetensors"
    run_cli("convert", "--from", family, "--model", name, ckpt, "--out", engine).ok()
    run_cli("convert", "--to", family, engine, "--out", tmp_path / "back.pt").ok()
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    with torch.device("meta"):  # the layout only: keys and shapes
        official = factory(**kwargs)
    assert list(back) == list(official.state_dict())  # the official keys, in the official order
    assert all(torch.equal(back[key], ema[key]) for key in ema)
    official.load_state_dict(back, strict=True, assign=True)  # the official module takes it strictly


@pytest.mark.slow
def test_converted_reference_mpdit_runs_the_same_function_in_the_engine(tmp_path):
    """The reference MPDiT's convention is the engine's: mpdit.load gives the same velocity."""
    factory = MPDiT_models["MPDiT-B/4x"]
    state = official_state(factory, input_size=16, std=0.03)
    torch.save(state, tmp_path / "ref.pt")
    run_cli("convert", "--from", "mpdit-ref", "--model", "MPDiT-B/4x", tmp_path / "ref.pt", "--out",
            tmp_path / "e.safetensors").ok()
    engine = mpdit.load(str(tmp_path / "e.safetensors"))
    official = factory(input_size=16)
    official.load_state_dict(state)
    x, t, y = torch.randn(2, 4, 16, 16), torch.rand(2), torch.tensor([3, 1000])
    with torch.no_grad():
        torch.testing.assert_close(engine(x, t, y), official.eval()(x, t, y), rtol=0, atol=0)


def test_sit_weights_sample_in_the_engine_as_sit_integrates_them():
    """Engine Euler (t 1 -> 0) on SiTVelocity = SiT's own Euler from noise at 0 to data at 1."""
    sit = SiT_models["SiT-S/8"](input_size=16, hidden_size=64, num_heads=4, depth=2)
    sit.load_state_dict(official_state(SiT_models["SiT-S/8"], input_size=16, hidden_size=64, num_heads=4, depth=2))
    sit.eval()
    noise, y = torch.randn(2, 4, 16, 16), torch.tensor([1, 2])
    ours = sample(SiTVelocity(sit), y, method="euler", steps=8, noise=noise)
    x, grid = noise, torch.linspace(0, 1, 9)
    with torch.no_grad():
        for t, t_next in zip(grid[:-1], grid[1:]):
            x = x + (t_next - t) * sit(x, t.repeat(2), y)
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_sample_takes_a_converted_file(converted_pixel_model, tmp_path):
    """Pixel-space (3-channel) official models: no VAE needed; DiT's file samples with DDPM by default."""
    family, _, converted = converted_pixel_model
    run_cli("sample", "--checkpoint", converted, "--out", tmp_path / "s.npz", "--classes", "1,2", "--steps", "4",
            "--cfg-scale", "2").ok()
    assert np.load(tmp_path / "s.npz")["arr_0"].shape == (2, 16, 16, 3)
    if family == "dit":  # a flow sampler on DiT's eps model is refused
        result = run_cli("sample", "--checkpoint", converted, "--out", tmp_path / "s.npz", "--method", "euler")
        assert "holds a DiT (DDPM eps) model; use --method ddpm" in result.error


def test_train_init_starts_from_converted_weights(tmp_path, capsys):
    state = official_state(DiT_models["DiT-S/8"], input_size=8, in_channels=1, num_classes=10)
    torch.save({"ema": state}, tmp_path / "dit.pt")
    run_cli("convert", "--from", "dit", "--model", "DiT-S/8", tmp_path / "dit.pt", "--out",
            tmp_path / "dit.safetensors").ok()
    config = TrainConfig(model="DiT-S/8", dataset="digits", image_size=8, steps=1, global_batch_size=4,
                         run_dir=str(tmp_path / "run"), sample_every=0, num_workers=0, lr=1e-12,
                         init=str(tmp_path / "dit.safetensors"))
    train(config)
    trained = mpdit.load(str(tmp_path / "run" / "ckpt-00000001.pt"), weights="model").state_dict()
    assert capsys.readouterr().err.count("holds dit weights trained with DDPM eps prediction") == 1
    torch.testing.assert_close(trained["blocks.3.mlp.fc1.weight"], state["blocks.3.mlp.fc1.weight"], rtol=0,
                               atol=1e-9)
    # a file for another network: one line naming the key and both shapes
    other = TrainConfig(**{**config.__dict__, "model": "DiT-S/4", "run_dir": str(tmp_path / "run2")})
    with pytest.raises(ValueError, match=r"dit.safetensors': 'pos_embed' has shape \[1, 384\], the model expects "
                                         r"\[4, 384\]$"):
        train(other)


# --------------------------------------------------------------------------- bad checkpoints
@pytest.fixture(scope="module")
def dit_state():
    return official_state(DiT_models["DiT-S/8"], input_size=16)


def bad_cases(dit_state):
    missing = dict(dit_state)
    del missing["blocks.5.mlp.fc2.bias"]
    extra = {**dit_state, "blocks.12.attn.qkv.weight": torch.zeros(3)}
    reference = official_state(MPDiT_models["MPDiT-B/4x"], input_size=16)
    return [
        ("missing", missing, "dit", "DiT-S/8", "missing key 'blocks.5.mlp.fc2.bias' (expected shape [384])"),
        ("unexpected", extra, "dit", "DiT-S/8", "unexpected key 'blocks.12.attn.qkv.weight' (shape [3])"),
        ("wrong size", dit_state, "dit", "DiT-B/8",
         "'pos_embed' has shape [1, 4, 384], the model expects [1, 4, 768]"),
        ("wrong family", reference, "dit", "DiT-S/8", "(its keys are those of a mpdit-ref checkpoint, not dit)"),
        ("wrong family back", dit_state, "mpdit-ref", "MPDiT-B/4x", "(its keys are those of a dit/sit checkpoint"),
        ("unknown name", dit_state, "dit", "DiT-XXL/2", "model='DiT-XXL/2': not a dit model"),
    ]


def test_every_bad_checkpoint_is_one_line_naming_the_first_offending_key(tmp_path, dit_state):
    for label, state, family, name, message in bad_cases(dit_state):
        torch.save(state, tmp_path / "bad.pt")
        result = run_cli("convert", "--from", family, "--model", name, tmp_path / "bad.pt", "--out",
                         tmp_path / "x.safetensors")
        assert message in result.error, label
        assert not (tmp_path / "x.safetensors").exists()


def test_unreadable_or_engine_files_and_wrong_direction(tmp_path, dit_state):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"step": 3}, tmp_path / "nostate.pt")
    torch.save(dit_state, tmp_path / "dit.pt")
    run_cli("convert", "--from", "dit", "--model", "DiT-S/8", tmp_path / "dit.pt", "--out",
            tmp_path / "e.safetensors").ok()
    export = mpdit.io.read(str(tmp_path / "e.safetensors"))
    torch.save(export["state_dict"], tmp_path / "engine.pt")
    for args, message in [
        (["--from", "dit", "--model", "DiT-S/8", str(tmp_path / "junk.pt")], "unreadable as a checkpoint"),
        (["--from", "dit", "--model", "DiT-S/8", str(tmp_path / "nostate.pt")], "holds no state dict"),
        (["--from", "dit", "--model", "DiT-S/8", str(tmp_path / "gone.pt")], "no such file"),
        (["--from", "sit", "--model", "SiT-S/8", str(tmp_path / "engine.pt")], "already in the engine's layout"),
        (["--from", "dit", str(tmp_path / "dit.pt")], "--model: --from needs the official model name"),
        (["--to", "mpdit-ref", str(tmp_path / "e.safetensors")], "holds a dit model (DiT-S/8)"),
    ]:
        out = tmp_path / ("o.pt" if args[0] == "--to" else "o.safetensors")  # the suffix of the format written
        assert message in run_cli("convert", *args, "--out", out).error, args


def test_the_python_api_samples_a_converted_file_as_the_command_line_does(converted_pixel_model):
    """mpdit.sample(mpdit.load(converted)): SiT's velocity turned around, DiT's DDPM sampler, and
    the wrong sampler for the objective refused, as `mpdit sample` refuses it."""
    from mpdit.compat.sampling import sampling_model
    from mpdit.diffusion.ddpm import ddpm_sample
    from mpdit.io import read

    family, _, converted = converted_pixel_model
    model = mpdit.load(converted)
    reference = sampling_model(read(converted), "cpu")
    noise = torch.randn(2, 3, 16, 16)
    if family == "dit":
        got = mpdit.sample(model, [1, 2], steps=3, noise=noise, generator=torch.Generator().manual_seed(0))  # ddpm
        expected = ddpm_sample(reference, torch.tensor([1, 2]), steps=3, noise=noise,
                               generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(got, expected)
        with pytest.raises(ValueError, match="holds a DiT \\(DDPM eps\\) model; use --method ddpm"):
            mpdit.sample(model, [1, 2], method="euler", steps=3)
    else:
        got = mpdit.sample(model, [1, 2], steps=3, noise=noise)
        torch.testing.assert_close(got, sample(reference, torch.tensor([1, 2]), steps=3, noise=noise))
        assert not torch.allclose(got, sample(model, torch.tensor([1, 2]), steps=3, noise=noise))  # turned around
        with pytest.raises(ValueError, match="method='ddpm': for DiT's DDPM models"):
            mpdit.sample(model, [1, 2], method="ddpm")


def test_an_engine_file_converts_only_to_the_family_of_its_layout(digits_export, tmp_path):
    """An engine-trained MPDiT (two stages) has no DiT layout: one line naming what it holds and where
    it can go, not the DiT constructor's TypeError."""
    error = run_cli("convert", digits_export, "--to", "dit", "--model", "DiT-S/8", "--out", tmp_path / "x.pt").error
    assert f"to='dit': {digits_export} holds an MPDiT model (MPDiT-S, stages 4:1,2:1); convert it --to mpdit-ref" \
        in error
    assert not (tmp_path / "x.pt").exists()
