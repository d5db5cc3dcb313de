"""`mpdit eval --features digits`: a quality figure for the CPU demo, where no Inception applies.

The Fréchet distance and precision / recall (k=3) are computed, as for images, but in the
feature space of a small classifier (scikit-learn's MLP, one hidden layer of 64 ReLU units)
trained on two thirds of scikit-learn's real digits at the samples' resolution. The samples
are compared with those training digits, and the same figures for the held-out real digits
give the floor: what real data scores, so a model's number has something to stand beside.

The classifier is fitted once per process and its weights kept in the feature cache
($MPDIT_CACHE_DIR), keyed by what determines the fit (scikit-learn's version, the seed, the
image size and the training digits themselves): a fit takes seconds, and training evaluates
at every --eval-every.
"""
import functools
import hashlib
import os
import zipfile

import numpy as np

from mpdit.data import DigitsDataset
from mpdit.evaluation.features import cache_dir
from mpdit.evaluation.metrics import frechet_distance, precision_recall, statistics
from mpdit.io.files import atomic_path
from mpdit.io.images import to_uint8
from mpdit.io.npz_images import ImageFileError, array_keys, check_images_header

HIDDEN = 64
WEIGHT_NAMES = ("hidden_weight", "hidden_bias", "output_weight", "output_bias")


def _as_vectors(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 1) -> float rows in [0, 1]."""
    return images_uint8.reshape(len(images_uint8), -1).astype(np.float64) / 255.0


class DigitsClassifier:
    """The classifier and the real digits at one resolution, quantised to uint8 as samples are."""

    def __init__(self, size: int, seed: int = 0):
        from sklearn.model_selection import train_test_split  # here: importing scikit-learn costs ~0.7 s

        data = DigitsDataset(size)
        real = _as_vectors(to_uint8(data.images).numpy())
        labels = data.labels.numpy()
        self.train, self.held_out, self.train_labels, self.held_out_labels = train_test_split(
            real, labels, test_size=1 / 3, random_state=seed, stratify=labels)
        self.weights = _fitted_weights(self.train, self.train_labels, seed)
        self.held_out_accuracy = float((self.predict(self.held_out) == self.held_out_labels).mean())
        self.reference = self.features(self.train)
        self.reference_statistics = statistics(self.reference)

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """The hidden layer's activations."""
        hidden_weight, hidden_bias = self.weights[:2]
        return np.maximum(vectors @ hidden_weight + hidden_bias, 0)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """The label read from each image (the classes are 0..9, in order: argmax is the label)."""
        output_weight, output_bias = self.weights[2:]
        return np.argmax(self.features(vectors) @ output_weight + output_bias, axis=1)


@functools.lru_cache(maxsize=None)
def digits_classifier(size: int, seed: int = 0) -> DigitsClassifier:
    """The classifier at `size`, built once per process."""
    return DigitsClassifier(size, seed)


def _cache_path(train: np.ndarray, seed: int) -> str:
    import sklearn

    digest = hashlib.sha256(np.ascontiguousarray(train).tobytes()).hexdigest()[:16]
    size = int(round(train.shape[1] ** 0.5))
    name = f"digits-classifier-sklearn{sklearn.__version__}-seed{seed}-{size}px-hidden{HIDDEN}-{digest}.npz"
    return os.path.join(cache_dir(), name)


def _fitted_weights(train: np.ndarray, labels: np.ndarray, seed: int) -> tuple:
    """(hidden weight, hidden bias, output weight, output bias) of the MLP fitted to the training
    digits: read from the cache, else fitted and written there."""
    path = _cache_path(train, seed)
    try:
        with np.load(path) as saved:
            return tuple(saved[name] for name in WEIGHT_NAMES)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # absent, or damaged: fit again
        pass
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=2000, random_state=seed).fit(train, labels)
    weights = (model.coefs_[0], model.intercepts_[0], model.coefs_[1], model.intercepts_[1])
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **dict(zip(WEIGHT_NAMES, weights)))
    except (OSError, ValueError):  # a cache that cannot be written costs a fit next time, nothing else
        pass
    return weights


def _figures(classifier: DigitsClassifier, vectors: np.ndarray) -> dict:
    features = classifier.features(vectors)
    precision, recall = precision_recall(classifier.reference, features, device="cpu")
    return {"fd": frechet_distance(statistics(features), classifier.reference_statistics), "precision": precision,
            "recall": recall}


def evaluate_digits(samples: str) -> dict:
    """Fréchet distance, precision and recall of digit samples (arr_0 uint8 N x H x W x 1, H = W
    in 8, 16, 32) in the classifier's feature space, with the figures of as many real held-out
    digits (up to the 599 there are) as the floor, and the share of samples the classifier reads as
    their label when the file has labels."""
    reader = check_images_header(samples, channels=(1,))
    size = reader.shape[1]
    if reader.shape[2] != size or size not in (8, 16, 32):
        raise ImageFileError(f"{samples}: {reader.shape[1]}x{reader.shape[2]} images; the digits classifier is for "
                             "8x8, 16x16 or 32x32 (mpdit train --dataset digits --image-size)")
    if len(reader) < 4:
        raise ImageFileError(f"{samples}: {len(reader)} images; precision / recall with k=3 need at least 4")
    vectors = _as_vectors(np.concatenate(list(reader.chunks(1024))))
    classifier = digits_classifier(size)
    floor = classifier.held_out[:len(vectors)]  # as many real digits as samples, where there are: the same bias
    result = {**_figures(classifier, vectors), "num_samples": len(vectors), "num_reference": len(classifier.train),
              "floor": {**_figures(classifier, floor), "num_samples": len(floor)},
              "classifier_accuracy_on_real": classifier.held_out_accuracy}
    if "labels" in array_keys(samples):
        with np.load(samples) as saved:
            labels = saved["labels"]
        if len(labels) == len(vectors):
            result["label_accuracy"] = float((classifier.predict(vectors) == labels).mean())
    return result


def format_digits(result: dict) -> str:
    floor = result["floor"]
    lines = [f"Fréchet distance (digits classifier features): {result['fd']:.4f}  ({result['num_samples']} samples "
             f"against {result['num_reference']} real training digits; {floor['num_samples']} real held-out digits: "
             f"{floor['fd']:.4f})",
             f"Precision: {result['precision']:.4f}  (real held-out: {floor['precision']:.4f})",
             f"Recall: {result['recall']:.4f}  (real held-out: {floor['recall']:.4f})"]
    if "label_accuracy" in result:
        lines.append(f"Read as their label: {result['label_accuracy']:.4f}  (real held-out: "
                     f"{result['classifier_accuracy_on_real']:.4f})")
    return "\n".join(lines)
