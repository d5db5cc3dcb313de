"""`mpdit eval --features digits`: real digits score near the floor of held-out real digits, noise
far from it; the classifier is fitted once per process and then read from the cache."""
import json

import numpy as np
from sklearn.neural_network import MLPClassifier

from helpers.cli import run_cli
from mpdit.data import DigitsDataset
from mpdit.evaluation import digits
from mpdit.io.images import to_uint8


def real_digits(path, count=200, size=16):
    real = DigitsDataset(size)
    np.savez(path, arr_0=to_uint8(real.images[-count:]).numpy(), labels=real.labels[-count:].numpy())
    return path


def test_digits_samples_get_a_frechet_distance_beside_the_real_data_floor(tmp_path):
    good = real_digits(tmp_path / "real.npz")
    noise = tmp_path / "noise.npz"
    np.savez(noise, arr_0=np.random.default_rng(3).integers(0, 256, (200, 16, 16, 1), dtype=np.uint8))
    results = {}
    for name, path in (("real", good), ("noise", noise)):
        result = run_cli("eval", "--features", "digits", path, "--json", tmp_path / f"{name}.json").ok()
        assert "real held-out digits" in result.out
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    real_fd, noise_fd, floor = results["real"]["fd"], results["noise"]["fd"], results["real"]["floor"]["fd"]
    assert noise_fd > 20 * max(real_fd, floor)  # noise is far; real digits are near the floor
    assert results["noise"]["precision"] == 0 and results["real"]["precision"] > 0.5
    assert results["real"]["label_accuracy"] > 0.9 and "label_accuracy" not in results["noise"]
    assert "no such file" in run_cli("eval", "--features", "digits", tmp_path / "good.npz").error


def test_the_classifier_is_fitted_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """A fresh cache: one fit for any number of evaluations in a process; a new process (the
    in-memory copy dropped) reads the fitted weights from disk and gets the same figures; another
    seed is another classifier."""
    monkeypatch.setenv("MPDIT_CACHE_DIR", str(tmp_path / "cache"))
    fits = []
    real_fit = MLPClassifier.fit
    monkeypatch.setattr(MLPClassifier, "fit", lambda self, *args: fits.append(self.random_state) or
                        real_fit(self, *args))
    samples = str(real_digits(tmp_path / "real.npz", count=50, size=8))  # 8 px: the quickest fit
    digits.digits_classifier.cache_clear()
    try:
        first = digits.evaluate_digits(samples)
        assert digits.evaluate_digits(samples) == first and fits == [0]  # training evaluates at every --eval-every
        assert len(list((tmp_path / "cache").glob("digits-classifier-*-seed0-8px-*.npz"))) == 1
        digits.digits_classifier.cache_clear()  # as a new process
        assert digits.evaluate_digits(samples) == first and fits == [0]  # from disk: the same weights, no fit
        digits.digits_classifier(8, seed=1)
        assert fits == [0, 1]
    finally:
        digits.digits_classifier.cache_clear()  # the next test fits (or reads) with the session's cache


def test_digits_saved_channels_first_are_named_as_nchw(tmp_path):
    path = tmp_path / "nchw.npz"
    np.savez(path, arr_0=np.zeros((10, 3, 16, 16), np.uint8))
    error = run_cli("eval", "--features", "digits", path).error
    assert "arr_0 has shape (10, 3, 16, 16): looks like NCHW (N, C, H, W); expected NHWC, N x H x W x 1" in error
