"""A small, deterministic CIFAR-10 look-alike in the official layout, for tests and smoke runs.

Each class has its own colour and its own stripe orientation and frequency; noise, a random
phase and a random brightness make samples differ. A small network learns it far above
chance in seconds, and every reader of the official layout reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from alexnet_course.data.cifar10 import FOLDER, write_batches


def synthetic_images(n: int, seed: int = 0, num_classes: int = 10):
    """Return ``(images, labels)``: n uint8 (32, 32, 3) images with balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64) / 32.0
    palette = np.random.default_rng(1234).uniform(0.15, 0.85, size=(num_classes, 3))
    images = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        angle = np.pi * c / num_classes
        freq = 2 + (c % 3)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        img = palette[c] + 0.25 * wave[..., None] + rng.normal(0, 0.08, (32, 32, 3))
        img *= rng.uniform(0.8, 1.2)
        images[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def write_synthetic_cifar10(
    root: str | os.PathLike, n_train: int = 1000, n_test: int = 200, seed: int = 0
) -> Path:
    """Write ``root/cifar-10-batches-py`` with n_train training and n_test test images.

    Refuses to overwrite an existing folder: nothing the user had is lost.

    Returns:
        The batch folder.
    """
    from alexnet_course.data.cifar10 import DataError

    folder = Path(root) / FOLDER
    if folder.exists():
        raise DataError(f"{folder} already exists; choose another folder (nothing was written)")
    folder.mkdir(parents=True)
    x, y = synthetic_images(n_train + n_test, seed)
    write_batches(folder, (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]),
                  label="synthetic ")  # fmt: skip
    return folder
