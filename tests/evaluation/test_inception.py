"""The engine's Inception against torch-fidelity's own extractor (the port whose agreement with
the TensorFlow graph is published), on the same uint8 images and the same weight file; the
weights are random here (no download), saved in torch-fidelity's format."""
import numpy as np
import pytest
import torch

from helpers.fidelity_reference import fidelity_inception_class, fidelity_resize
from mpdit.evaluation import inception
from mpdit.evaluation.inception import WEIGHTS_FILE, WEIGHTS_URL, InceptionV3, find_weights, load_inception

FidelityInception = fidelity_inception_class()
needs_fidelity = pytest.mark.skipif(FidelityInception is None, reason="torch-fidelity is not installed "
                                    "(pip install --no-deps torch-fidelity==0.4.0, as .ci/run does)")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random network, saved as a state dict: He-initialised convolutions and batch norms near
    the identity (non-trivial statistics), so that features still differ between images 94 layers in."""
    torch.manual_seed(0)
    network = InceptionV3()
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.05, 0.05)
            module.running_var.uniform_(0.8, 1.2)
            module.weight.data.uniform_(0.9, 1.1)
            module.bias.data.uniform_(-0.05, 0.05)
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_FILE
    torch.save(network.state_dict(), path)
    return str(path)


@needs_fidelity
@pytest.mark.parametrize("size", [(32, 32), (40, 24), (331, 320)])  # up, non-square, down (no antialias)
def test_the_resize_is_tensorflow_1s_as_torch_fidelity_computes_it(size):
    x = torch.rand(2, 3, *size) * 255
    ours = inception.resize_like_tf1(x, 299)
    theirs = fidelity_resize(x, size=(299, 299), align_corners=False)
    assert torch.equal(ours, theirs)
    assert not torch.allclose(ours, torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear"), atol=1e-3)


@needs_fidelity
def test_features_equal_torch_fidelitys_extractor_on_the_same_images(weights):
    theirs = FidelityInception("inception-v3-compat", ["2048", "logits_unbiased"],
                               feature_extractor_weights_path=weights)  # loads the file strictly: same layout
    hooked = {}
    theirs.Mixed_6d.branch1x1.register_forward_hook(lambda module, args, out: hooked.update(mixed_6_conv=out))
    ours = load_inception(weights)
    images = torch.randint(0, 256, (3, 3, 64, 48), dtype=torch.uint8)
    with torch.no_grad():
        got = ours(images)
        pool, logits = theirs(images)
    assert got["pool"].std(0).mean() > 1e-3  # features that differ between images
    torch.testing.assert_close(got["pool"], pool, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["logits"], logits, rtol=1e-5, atol=1e-6)
    # sFID: Mixed_6d's 1x1 branch (17 x 17 x 192), NHWC, first 7 channels: 2023 per image
    spatial = hooked["mixed_6_conv"]
    assert spatial.shape == (3, 192, 17, 17)
    torch.testing.assert_close(got["spatial"], spatial.permute(0, 2, 3, 1)[..., :7].flatten(1), rtol=1e-5, atol=1e-6)
    nchw = spatial[:, :7].flatten(1)
    assert not torch.allclose(got["spatial"], nchw, atol=1e-3)  # the layout is what this checks


def test_spatial_features_are_the_1x1_branch_of_mixed_6d_in_nhwc(weights):
    """Without torch-fidelity too: a hook on the engine's own layer."""
    network = load_inception(weights)
    hooked = {}
    network.Mixed_6d.branch1x1.register_forward_hook(lambda module, args, out: hooked.update(out=out))
    with torch.no_grad():
        got = network(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    expected = hooked["out"].permute(0, 2, 3, 1)[..., :7].reshape(2, 17 * 17 * 7)
    assert torch.equal(got["spatial"], expected)
    assert got["pool"].shape == (2, 2048) and got["logits"].shape == (2, 1008)
    # the logits have no bias: pool_3 times the softmax weights only
    torch.testing.assert_close(got["logits"], got["pool"] @ network.fc.weight.T)


def test_weights_come_from_the_argument_the_environment_or_the_hub_cache(weights, tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert find_weights(weights) == weights
    monkeypatch.setenv(inception.WEIGHTS_ENV, weights)
    assert find_weights() == weights
    monkeypatch.delenv(inception.WEIGHTS_ENV)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_weights() == str(cached)


def test_no_weights_and_no_network_is_one_line_naming_the_file_and_where_it_is_published(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(inception, "_online", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *args, **kwargs: pytest.fail("a download"))
    with pytest.raises(ValueError) as error:
        find_weights()
    message = str(error.value)
    assert "\n" not in message and WEIGHTS_FILE in message and WEIGHTS_URL in message
    assert "--inception-weights" in message


def test_a_file_that_is_not_the_weights_is_one_line(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable weight file"):
        load_inception(str(junk))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not torch-fidelity's Inception weights") as error:
        load_inception(str(other))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="no such file"):
        load_inception(str(tmp_path / "missing.pth"))


def test_only_uint8_nchw_rgb_goes_in():
    network = InceptionV3()
    with pytest.raises(ValueError, match="expected uint8"):
        network(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="expected uint8"):
        network(torch.zeros(1, 8, 8, 3, dtype=torch.uint8))
    assert np.isfinite(network(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))["pool"].detach().numpy()).all()
