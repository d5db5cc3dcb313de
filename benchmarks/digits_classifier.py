"""Are the sampled digits the requested ones? A classifier trained on real digits judges them.

    python benchmarks/digits_classifier.py runs/digits/samples.npz

The classifier (an RBF support-vector machine from scikit-learn) is trained on 75% of the
real digits, preprocessed exactly as the training set (16 x 16, [-1, 1]); its accuracy on
the other 25% is the reference for its accuracy on the samples, per class.
"""
import argparse
import json

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from mpdit.data import DigitsDataset


def per_class_accuracy(predicted, labels, classes=range(10)) -> dict:
    return {int(c): float((predicted[labels == c] == c).mean()) for c in classes if (labels == c).any()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", help=".npz written by `mpdit sample` (arr_0 uint8 NHWC, labels)")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()

    real = DigitsDataset(16)
    features = real.images.flatten(1).numpy()
    labels = real.labels.numpy()
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.25, random_state=0,
                                                        stratify=labels)
    classifier = SVC(gamma="scale").fit(x_train, y_train)
    held_out = classifier.predict(x_test)

    data = np.load(args.samples)
    images = torch.tensor(data["arr_0"]).permute(0, 3, 1, 2).float() / 127.5 - 1  # back to [-1, 1]
    sample_labels = data["labels"]
    predicted = classifier.predict(images.flatten(1).numpy())

    result = {"samples": int(len(sample_labels)),
              "sample_accuracy": float((predicted == sample_labels).mean()),
              "held_out_accuracy": float((held_out == y_test).mean()),
              "sample_accuracy_per_class": per_class_accuracy(predicted, sample_labels),
              "held_out_accuracy_per_class": per_class_accuracy(held_out, y_test)}
    print("| class | samples: classified as requested | real held-out digits: accuracy |")
    print("|---|---|---|")
    for c in sorted(result["sample_accuracy_per_class"]):
        sampled, held_out = result["sample_accuracy_per_class"][c], result["held_out_accuracy_per_class"][c]
        print(f"| {c} | {sampled:.0%} | {held_out:.0%} |")
    print(f"| all | {result['sample_accuracy']:.1%} ({result['samples']} samples) | "
          f"{result['held_out_accuracy']:.1%} ({len(y_test)} digits) |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
