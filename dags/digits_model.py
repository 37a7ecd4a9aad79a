"""The real model behind the inference examples: a support-vector classifier of handwritten digits.

It trains on the 8x8 digit images that ship inside scikit-learn (``load_digits``, 1,797 images), so nothing is
downloaded, in a fraction of a second. The work worth metering is the inference: the model reads noisy copies of the
images it held out from training (seeded, so the same call gives the same answer on any machine), in batches so
memory stays small however many images a run reads. About 0.05 to 0.08 ms an image on one core: 300,000 take 15 to 25 s.

This file defines no workflow: the example tasks import it when they run, so scikit-learn is imported by the worker
that runs the inference, never by the parser that reads the example files.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

SEED = 0
#: Standard deviation of the noise added to each pixel (pixels scaled to [0, 1]): held-out accuracy about 0.97.
NOISE = 0.2
#: Images per ``predict`` call: the kernel between a batch and the ~600 support vectors takes about 25 MB.
BATCH_SIZE = 5_000
HELD_OUT = 0.25


@cache
def trained(seed: int = SEED) -> tuple[SVC, np.ndarray, np.ndarray]:
    """The classifier trained on three quarters of the bundled digits, and the quarter it never saw (images scaled
    to [0, 1], and their labels): accuracy is measured on images the model did not learn from."""
    digits = load_digits()
    train_x, held_x, train_y, held_y = train_test_split(digits.data / 16.0, digits.target, test_size=HELD_OUT,
                                                        random_state=seed, stratify=digits.target)
    return SVC().fit(train_x, train_y), held_x, held_y


def noisy_digits(first: int, count: int, *, seed: int = SEED,
                 batch_size: int = BATCH_SIZE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Images ``first`` to ``first + count - 1`` of a seeded stream of noisy held-out digits, with their true labels,
    ``batch_size`` at a time. The stream of a chunk depends only on ``seed`` and ``first``."""
    if first < 0 or count < 0 or batch_size < 1:
        raise ValueError(f"first and count must be >= 0 and batch_size >= 1, got {first}, {count}, {batch_size}")
    _, images, labels = trained(seed)
    rng = np.random.default_rng((seed, first))
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        picked = rng.integers(0, len(images), size)
        noisy = np.clip(images[picked] + rng.normal(0.0, NOISE, (size, images.shape[1])), 0.0, 1.0)
        yield noisy, labels[picked]


def evaluate(count: int, *, seed: int = SEED) -> dict[str, float | int]:
    """The model's accuracy over ``count`` noisy held-out images."""
    if count < 1:
        raise ValueError(f"evaluate at least one image, got {count}")
    model = trained(seed)[0]
    correct = sum(int(np.sum(model.predict(batch) == truth)) for batch, truth in noisy_digits(0, count, seed=seed))
    return {"accuracy": correct / count, "images": count}


def tag(first: int, count: int, *, seed: int = SEED) -> dict[str, object]:
    """The digit the model reads in each image of a chunk, counted per digit, and the share it read right."""
    model = trained(seed)[0]
    per_digit = np.zeros(10, dtype=int)
    correct = 0
    for batch, truth in noisy_digits(first, count, seed=seed):
        predicted = model.predict(batch)
        per_digit += np.bincount(predicted, minlength=10)
        correct += int(np.sum(predicted == truth))
    return {"first": first, "images": count, "per_digit": {str(d): int(n) for d, n in enumerate(per_digit)},
            "accuracy": correct / count if count else None}
