"""Classifier-free guidance: one batched forward equals the combination of two forwards."""
import pytest
import torch

from helpers.models import random_inputs, randomize_, tiny_model
from mpdit.diffusion.guidance import GuidedVelocity


@pytest.fixture
def model():
    return randomize_(tiny_model("MPDiT-S")).eval()


def _separate(model, x, t, y, scale):
    t_batch = torch.full((x.shape[0],), t)
    cond = model(x, t_batch, y)
    uncond = model(x, t_batch, torch.full_like(y, model.config.num_classes))
    return cond, uncond, uncond + scale * (cond - uncond)


def test_one_batched_forward_equals_two_separate_forwards(model):
    x, _, y = random_inputs(model, batch=3)
    y = y.clamp(max=model.config.num_classes - 1)
    calls = []
    model.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    velocity = GuidedVelocity(model, y, cfg_scale=4.0)
    guided = velocity(x, 0.6)
    assert calls == [6] and velocity.nfe == 1  # one forward of the doubled batch
    _, _, expected = _separate(model, x, 0.6, y, 4.0)
    torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-5)


def test_guiding_only_the_first_channels_keeps_the_conditional_rest(model):
    x, _, y = random_inputs(model, batch=2)
    guided = GuidedVelocity(model, y, cfg_scale=3.0, guide_channels=3)(x, 0.4)
    cond, _, full = _separate(model, x, 0.4, y, 3.0)
    torch.testing.assert_close(guided[:, :3], full[:, :3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(guided[:, 3:], cond[:, 3:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(guided[:, 3:], full[:, 3:])


def test_guidance_interval_uses_the_conditional_velocity_outside(model):
    x, _, y = random_inputs(model, batch=2)
    velocity = GuidedVelocity(model, y, cfg_scale=3.0, interval=(0.2, 0.7))
    cond, _, full = _separate(model, x, 0.9, y, 3.0)
    torch.testing.assert_close(velocity(x, 0.9), cond, rtol=1e-5, atol=1e-5)
    cond, _, full = _separate(model, x, 0.5, y, 3.0)
    torch.testing.assert_close(velocity(x, 0.5), full, rtol=1e-5, atol=1e-5)


def test_scale_one_is_the_conditional_model(model):
    x, _, y = random_inputs(model, batch=2)
    cond, _, _ = _separate(model, x, 0.3, y, 1.0)
    torch.testing.assert_close(GuidedVelocity(model, y, cfg_scale=1.0)(x, 0.3), cond)


@pytest.mark.parametrize("kwargs, argument", [
    ({"cfg_scale": -1.0}, "cfg_scale"),
    ({"guide_channels": 0}, "guide_channels"),
    ({"interval": (0.8, 0.2)}, "interval"),
    ({"interval": (0.0, 1.5)}, "interval"),
])
def test_bad_guidance_arguments(model, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        GuidedVelocity(model, torch.tensor([1]), **kwargs)
