"""FD-DINOv2: the network against Hugging Face transformers' Dinov2Model with the same random
weights, its position resize against the hub model's, the preprocessing against PIL's bicubic
resize, and `mpdit eval --features dinov2` (and --make-ref's mu_dinov2 / sigma_dinov2) end to end,
all on a small random checkpoint in the published file's layout (no download)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers.cli import run_cli
from helpers.fake_inception import FakeInception
from mpdit.evaluation import reference
from mpdit.evaluation.dinov2 import MEAN, STD, DinoV2, dinov2_features, load_dinov2, preprocess
from mpdit.evaluation.metrics import frechet_distance, statistics

WIDTH, DEPTH, PATCH, GRID = 128, 2, 14, 4  # 2 heads of 64, as every DINOv2; a 4 x 4 grid of 14 px patches


def random_checkpoint(seed: int = 0) -> dict:
    """A DINOv2 state dict in the published layout, every tensor random (LayerScale near 1, so
    that every branch counts)."""
    torch.manual_seed(seed)
    network = DinoV2(WIDTH, DEPTH, PATCH, GRID)
    state = {}
    for name, tensor in network.state_dict().items():
        if name.endswith("gamma"):
            state[name] = torch.rand_like(tensor) + 0.5
        elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
            state[name] = 1 + 0.1 * torch.randn_like(tensor)
        else:
            state[name] = 0.05 * torch.randn_like(tensor)
    return state


def hugging_face_model(state: dict):
    """transformers' Dinov2Model with the same weights, mapped to its names."""
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=WIDTH, num_hidden_layers=DEPTH, num_attention_heads=WIDTH // 64, mlp_ratio=4,
                          image_size=GRID * PATCH, patch_size=PATCH, layerscale_value=1.0, layer_norm_eps=1e-6,
                          hidden_act="gelu", qkv_bias=True, use_swiglu_ffn=False)
    mapped = {"embeddings.cls_token": state["cls_token"], "embeddings.mask_token": state["mask_token"],
              "embeddings.position_embeddings": state["pos_embed"],
              "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
              "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
              "layernorm.weight": state["norm.weight"], "layernorm.bias": state["norm.bias"]}
    model = Dinov2Model(config).eval()
    # transformers 5 names the projections q_proj ... o_proj; 4.x attention.query ... output.dense
    if "encoder.layer.0.attention.q_proj.weight" in model.state_dict():
        projections = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj")
    else:
        projections = ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                       "attention.output.dense")
    for i in range(DEPTH):
        ours, theirs = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            for name, part in zip(projections[:3], state[ours + f"attn.qkv.{kind}"].chunk(3)):
                mapped[theirs + f"{name}.{kind}"] = part
            mapped[theirs + f"{projections[3]}.{kind}"] = state[ours + f"attn.proj.{kind}"]
            for layer in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                mapped[theirs + f"{layer}.{kind}"] = state[ours + f"{layer}.{kind}"]
        mapped[theirs + "layer_scale1.lambda1"] = state[ours + "ls1.gamma"]
        mapped[theirs + "layer_scale2.lambda1"] = state[ours + "ls2.gamma"]
    model.load_state_dict(mapped, strict=True)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_small_random.pth"
    torch.save(random_checkpoint(), path)
    return str(path)


def test_the_cls_features_equal_hugging_faces_dinov2_with_the_same_weights(checkpoint):
    ours = load_dinov2(checkpoint)
    theirs = hugging_face_model(torch.load(checkpoint, weights_only=True))
    x = torch.randn(3, 3, GRID * PATCH, GRID * PATCH)  # the checkpoint's own grid: no position resize
    with torch.no_grad():
        got, expected = ours(x), theirs(pixel_values=x).pooler_output
    assert got.std(0).mean() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_positions_are_resized_as_the_hub_model_resizes_them(checkpoint):
    """At 224 px (16 x 16 patches) the 4 x 4 grid is resized with the hub model's scale factor
    (16 + 0.1) / 4, bicubic, no antialiasing; Hugging Face resizes to the size (no offset): close,
    not equal, and the hub's is the one EDM2's FD-DINOv2 uses."""
    network = load_dinov2(checkpoint)
    grid = network.pos_embed[:, 1:].reshape(1, GRID, GRID, WIDTH).permute(0, 3, 1, 2)
    hub = F.interpolate(grid, scale_factor=((16 + 0.1) / GRID,) * 2, mode="bicubic", antialias=False)
    hub = hub.permute(0, 2, 3, 1).reshape(1, 256, WIDTH)
    positions = network.positions(16, 16)
    assert torch.equal(positions[:, 1:], hub) and torch.equal(positions[:, :1], network.pos_embed[:, :1])
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic").permute(0, 2, 3, 1).reshape(1, 256, WIDTH)
    assert not torch.allclose(positions[:, 1:], by_size, atol=1e-4)


def test_preprocessing_is_pil_bicubic_to_224_then_imagenet_mean_and_std():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    x = preprocess(images)
    assert x.shape == (2, 3, 224, 224)
    expected = np.asarray(Image.fromarray(images[1]).resize((224, 224), Image.BICUBIC)) / 255.0
    expected = (expected - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(x[1].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-5)
    grey = images[:, :, :, :1]
    torch.testing.assert_close(preprocess(grey), preprocess(np.repeat(grey, 3, axis=-1)))


def test_eval_features_dinov2_and_make_ref_store_and_use_its_statistics(checkpoint, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    samples, ref = (rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    np.savez(tmp_path / "images.npz", arr_0=ref)
    network = load_dinov2(checkpoint)
    ref_statistics = statistics(dinov2_features(ref, network))
    expected = frechet_distance(statistics(dinov2_features(samples, network)), ref_statistics)

    printed = run_cli("eval", "--features", "dinov2", tmp_path / "images.npz", tmp_path / "samples.npz",
                      "--dinov2-weights", checkpoint, "--no-progress").ok()
    assert printed.out.startswith(f"FD-DINOv2: {expected:.4f}  (12 samples against 12 reference images")
    assert "stores no mu_dinov2 / sigma_dinov2" in printed.err

    monkeypatch.setattr(reference, "load_inception", lambda path, device: FakeInception())
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"stand-in")
    run_cli("eval", "--make-ref", tmp_path / "images.npz", "--out", tmp_path / "ref.npz", "--features", "dinov2",
            "--dinov2-weights", checkpoint, "--inception-weights", weights, "--batch-size", "5", "--no-progress").ok()
    with np.load(tmp_path / "ref.npz") as saved:
        assert {"mu", "sigma", "mu_s", "sigma_s", "mu_dinov2", "sigma_dinov2"} <= set(saved.files)
        np.testing.assert_allclose(saved["sigma_dinov2"], ref_statistics.sigma, rtol=1e-4, atol=1e-7)
    stored = run_cli("eval", "--features", "dinov2", tmp_path / "ref.npz", tmp_path / "samples.npz",
                     "--dinov2-weights", checkpoint, "--no-progress", "--json", tmp_path / "fd.json").ok()
    assert "against the reference's stored mu_dinov2 / sigma_dinov2" in stored.out
    assert float(stored.out.split()[1]) == pytest.approx(expected, rel=1e-4)


def test_missing_or_foreign_weights_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MPDIT_DINOV2_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    np.savez(tmp_path / "a.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8) + 7)
    args = ["eval", "--features", "dinov2", tmp_path / "a.npz", tmp_path / "a.npz"]
    assert "no DINOv2 weights: pass --dinov2-weights FILE or set MPDIT_DINOV2_WEIGHTS" in run_cli(*args).error
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(2)}, foreign)
    assert f"dinov2_weights='{foreign}': not a DINOv2 checkpoint" in run_cli(*args, "--dinov2-weights", foreign).error
