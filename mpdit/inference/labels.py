"""The class label of every image a sampling run draws."""
import torch

MAX_SAMPLES = 10_000_000  # a sanity bound: 200x FID-50K


def image_labels(num_classes: int, classes=None, per_class: int = None, num_samples: int = None,
                  random_classes: bool = False, seed: int = 0) -> torch.Tensor:
    """The label of every image. num_samples: balanced over `classes` (default every class),
    N // C of each and one more of the first N % C, in class blocks; with random_classes, each
    drawn uniformly from them (DiT's sample_ddp.py). per_class: that many of each of `classes`
    (default 10 random ones), in the order given."""
    if num_samples is not None and per_class is not None:
        raise ValueError(f"per_class={per_class}, num_samples={num_samples}: give one of them")
    if random_classes and num_samples is None:
        raise ValueError("random_classes: draws the class of each of num_samples images; give num_samples")
    if num_samples is not None and not 1 <= num_samples <= MAX_SAMPLES:
        raise ValueError(f"num_samples={num_samples}: expected an integer in [1, {MAX_SAMPLES}]")
    per_class = 1 if per_class is None else per_class
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: expected a positive integer")
    if classes is None and num_samples is not None:
        classes = list(range(num_classes))
    elif classes is None:  # random labels, reproducible from the seed
        classes = torch.randint(0, num_classes, (10,), generator=torch.Generator().manual_seed(seed)).tolist()
    classes = list(classes)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or not classes:
        raise ValueError(f"classes={bad or classes}: expected labels in [0, {num_classes - 1}] for this checkpoint")
    pool = torch.tensor(classes)
    if num_samples is None:
        return pool.repeat_interleave(per_class)
    if random_classes:
        return pool[torch.randint(0, len(pool), (num_samples,), generator=torch.Generator().manual_seed(seed))]
    return pool[torch.arange(num_samples) % len(pool)].sort(stable=True).values  # a block per class: grid rows
