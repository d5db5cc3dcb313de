"""The VAE of latent models: decode of a pixel model, a missing diffusers, no network: one line each."""
import sys

import pytest
import torch

import mpdit


def test_decode_of_a_pixel_model_and_a_missing_diffusers_are_one_line(monkeypatch):
    from mpdit.models.vae import load_vae

    with pytest.raises(ValueError, match="info=None: this model works in pixel space"):
        mpdit.decode(torch.zeros(1, 3, 8, 8), None)
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "diffusers.models", None)
    with pytest.raises(ValueError, match=r"install it: pip install -e '\.\[latents\]'"):
        load_vae("stabilityai/sd-vae-ft-ema", "cpu")


def test_a_vae_without_network_is_one_line_at_once(monkeypatch):
    """No hub: the cache only (diffusers would retry for about 30 s), then one line naming what to do."""
    diffusers_models = pytest.importorskip("diffusers.models")
    import mpdit.models.vae as vae

    asked = []
    real = diffusers_models.AutoencoderKL.from_pretrained.__func__

    def from_pretrained(cls, name, **kwargs):
        asked.append(kwargs)
        return real(cls, name, **kwargs)

    monkeypatch.setattr(diffusers_models.AutoencoderKL, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(vae, "reachable", lambda host: False)
    with pytest.raises(ValueError, match=r"vae='mpdit-tests/no-such-vae': not a local folder nor in the Hugging "
                                         r"Face cache, and huggingface.co cannot be reached .*--vae"):
        vae.load_vae("mpdit-tests/no-such-vae", "cpu")  # in no cache
    assert asked == [{"local_files_only": True}]
