"""The model's inputs and settings: bad ones get a ValueError that names the argument, the value and
what was expected; odd but valid ones (small integer labels, the null class) work."""
import pytest
import torch

from helpers.models import tiny_model
from mpdit import create_model, get_config


@pytest.fixture(scope="module")
def model():
    return tiny_model("MPDiT-S")


def good():
    return torch.randn(2, 4, 32, 32), torch.rand(2), torch.tensor([3, 7])


@pytest.mark.parametrize("change, message", [
    (lambda x, t, y: (x[0], t, y), r"x: expected a \(B, C, H, W\) tensor, got \(4, 32, 32\)"),
    (lambda x, t, y: (x[:, :3], t, y), r"x: got 3 channels .* expected in_channels=4"),
    (lambda x, t, y: (x[..., :30, :30], t, y), r"x: spatial size 30x30 is not divisible by the coarsest patch 4"),
    (lambda x, t, y: (x.long(), t, y), r"x: expected a floating-point tensor"),
    (lambda x, t, y: (x, t[:1], y), r"t: expected shape \(2,\) .* got \(1,\)"),
    (lambda x, t, y: (x, t[:, None], y), r"t: expected shape \(2,\)"),
    (lambda x, t, y: (x, 0.5, y), r"t: expected shape \(2,\) .* got float"),
    (lambda x, t, y: (x, t + 1.5, y), r"t: expected times in \[0, 1\]"),
    (lambda x, t, y: (x, torch.tensor([0.5, float("nan")]), y), r"t: expected times in \[0, 1\]"),
    (lambda x, t, y: (x, t, y[:1]), r"y: expected shape \(2,\)"),
    (lambda x, t, y: (x, t, y.float()), r"y: expected integer class labels, got torch.float32"),
    (lambda x, t, y: (x, t, torch.tensor([3, 1001])), r"y: expected labels in \[0, 1000\] .* \[3, 1001\]"),
    (lambda x, t, y: (x, t, torch.tensor([-1, 2])), r"y: expected labels in \[0, 1000\]"),
])
def test_forward_rejects_bad_inputs(model, change, message):
    with pytest.raises(ValueError, match=message):
        model(*change(*good()))


def test_null_class_is_a_valid_label(model):
    x, t, _ = good()
    assert model(x, t, torch.tensor([1000, 0])).shape == x.shape


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "MPDiT-XXL"}, r"model='MPDiT-XXL': unknown model; known models: DiT-S/2, .*MPDiT-XL"),
    ({"name": "MPDiT-B", "fine_depth": 0}, r"fine_depth=0: expected an integer in \[1, 12\]"),
    ({"name": "MPDiT-B", "fine_depth": 13}, r"fine_depth=13: expected an integer in \[1, 12\]"),
    ({"name": "MPDiT-XL-3L", "fine_depth": 20}, r"fine_depth=20: leaves -6 blocks in stage 1"),
    ({"name": "MPDiT-B", "class_tokens": -1}, r"class_tokens=-1: expected an integer >= 0"),
    ({"name": "MPDiT-B", "time_embed": "sinusoid"}, r"time_embed='sinusoid': expected one of \('mlp', 'fno'\)"),
    ({"name": "MPDiT-B", "latent_size": 30}, r"latent_size=30: expected a multiple of the coarsest patch 4"),
    ({"name": "MPDiT-B", "stages": [(2, 6), (4, 6)]}, r"stages=.*must divide the coarser patch"),
    ({"name": "MPDiT-B", "stages": [(6, 6), (4, 6)]}, r"stages=.*must divide the coarser patch"),
    ({"name": "MPDiT-B", "stages": [(4, 0), (2, 6)]}, r"stages\[0\] depth=0: expected a positive integer"),
    ({"name": "MPDiT-B", "stages": 4}, r"stages=4: expected a list of \(patch, depth\) pairs"),
    ({"name": "MPDiT-B", "in_channels": 0}, r"in_channels=0: expected a positive integer"),
    ({"name": "MPDiT-B", "dropout": 0.1}, r"dropout: unknown override"),
])
def test_create_model_rejects_bad_configurations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        with torch.device("meta"):
            create_model(**kwargs)


def test_bad_width_is_named():
    from dataclasses import replace
    with pytest.raises(ValueError, match="hidden_size=100: expected a multiple of num_heads=6"):
        replace(get_config("MPDiT-S"), hidden_size=100).validate()


@pytest.mark.parametrize("overrides, message", [
    ({"learn_sigma": "no"}, "learn_sigma='no': expected True or False"),
    ({"mlp_ratio": 0}, "mlp_ratio=0: expected a positive finite number"),
    ({"skip": 1}, "skip=1: expected True or False"),
])
def test_create_model_takes_only_real_booleans_and_ratios(overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model("MPDiT-S", **overrides)


def test_model_takes_small_integer_labels_and_refuses_an_empty_batch():
    model = create_model("MPDiT-S", stages=((4, 1), (2, 1)), latent_size=16).eval()
    x, t = torch.randn(2, 4, 16, 16), torch.rand(2)
    with torch.no_grad():
        small = torch.tensor([3, 7], dtype=torch.uint8)
        torch.testing.assert_close(model(x, t, small), model(x, t, torch.tensor([3, 7])))
    with pytest.raises(ValueError, match=r"x: an empty batch \(shape \(0, 4, 16, 16\)\)"):
        model(x[:0], t[:0], torch.zeros(0, dtype=torch.long))
