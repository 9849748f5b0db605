"""CIFAR-10, by hand: read the batch files, compute statistics, normalise, resize, augment,
split, and show a batch.

CIFAR-10 (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny Images") has
60,000 32x32 colour images in 10 classes: 50,000 for training (five batch files of 10,000)
and 10,000 for testing. Each batch file is a pickle whose ``b"data"`` is a uint8 array of
shape (N, 3072): the 1024 red values of an image, then its 1024 green, then 1024 blue, row by
row. Models want (N, 3, H, W) floats in PyTorch (NCHW) and (N, H, W, 3) in Keras (NHWC).

Every function here has a twin in the course library (``alexnet_course.data``) that the
later lessons use; the tests compare yours with plain numpy and torch formulas.
"""
# Your file for lesson 01_data: fill in every TODO, then run `pytest lessons/01_data`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Task 1.1: read one batch file: a pickle written by Python 2, whose keys are bytes
    (``b"data"``, ``b"labels"``); the page says which ``pickle.load`` argument reads it.

    Returns:
        ``(images, labels)``: uint8 (N, 32, 32, 3), channels LAST, and int64 (N,).
    """
    # TODO: Task 1.1 -- see docs/lessons/01_data.md#task-1-1
    raise NotImplementedError("Task 1.1 not started (docs/lessons/01_data.md#task-1-1)")


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Task 1.2: per-channel mean and standard deviation of uint8 (N, H, W, 3) images, in
    [0, 1] units (divide by 255). Compute them on the TRAINING images only: statistics of the
    test set would leak it into training.

    Returns:
        ``(mean, std)``, each a float64 numpy array of shape (3,).
    """
    # TODO: Task 1.2 -- see docs/lessons/01_data.md#task-1-2
    raise NotImplementedError("Task 1.2 not started (docs/lessons/01_data.md#task-1-2)")


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Task 1.3: ``(x - mean) / std`` per channel of a float (N, 3, H, W) tensor in [0, 1], as
    a new tensor (``x`` is left as it was)."""
    # TODO: Task 1.3 -- see docs/lessons/01_data.md#task-1-3
    raise NotImplementedError("Task 1.3 not started (docs/lessons/01_data.md#task-1-3)")


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Task 1.3: the inverse of :func:`normalize`: ``x * std + mean`` per channel."""
    # TODO: Task 1.3 -- see docs/lessons/01_data.md#task-1-3
    raise NotImplementedError("Task 1.3 not started (docs/lessons/01_data.md#task-1-3)")


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Task 1.4: bilinear resize of (N, C, H, W) to (N, C, size, size), half-pixel centres
    (``align_corners=False``) and no antialiasing, which is what ``tf.image.resize`` does, so
    both frameworks see the same pixels."""
    # TODO: Task 1.4 -- see docs/lessons/01_data.md#task-1-4
    raise NotImplementedError("Task 1.4 not started (docs/lessons/01_data.md#task-1-4)")


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Task 1.5: training augmentation of uint8 (N, H, W, C) images, one draw per image.

    Pad each side with ``pad`` zero pixels, crop a random HxW window (offsets uniform in
    [0, 2 * pad]), then flip left-right with probability 0.5. Every random number comes from
    ``generator``, so a seed reproduces the output.
    """
    # TODO: Task 1.5 -- see docs/lessons/01_data.md#task-1-5
    raise NotImplementedError("Task 1.5 not started (docs/lessons/01_data.md#task-1-5)")


def preprocess(images: np.ndarray, mean, std, size: int | None = None, train: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """Task 1.5: uint8 (N, H, W, 3) numpy images -> normalised float32 (N, 3, size, size).

    Augment (only when ``train``: evaluation must see the images as they are), scale to
    [0, 1], move channels first, normalise, resize (when ``size`` is given).
    """
    # TODO: Task 1.5 -- see docs/lessons/01_data.md#task-1-5
    raise NotImplementedError("Task 1.5 not started (docs/lessons/01_data.md#task-1-5)")


def stratified_split(labels: np.ndarray, val_size: int, seed: int = 0):
    """Task 1.6: hold out ``val_size`` samples for validation, the same share of every class.

    Class c gives ``round(val_size * n_c / N)`` samples (add or take one each from the
    largest classes until the total is exactly ``val_size``), chosen with
    ``np.random.default_rng(seed)``.

    Returns:
        ``(train_idx, val_idx)``: int arrays (in any order) that do not overlap and cover all
        samples.
    """
    # TODO: Task 1.6 -- see docs/lessons/01_data.md#task-1-6
    raise NotImplementedError("Task 1.6 not started (docs/lessons/01_data.md#task-1-6)")


def keras_preprocess(images: np.ndarray, mean, std, size: int | None = None):
    """Task 1.7: the same preprocessing (no augmentation) with TensorFlow, channels LAST: a
    float32 (N, S, S, 3) tensor equal to :func:`preprocess`'s output permuted from NCHW to
    NHWC (the same resize: bilinear, half-pixel centres, no antialiasing).
    """
    import tensorflow as tf

    # TODO: Task 1.7 -- see docs/lessons/01_data.md#task-1-7
    raise NotImplementedError("Task 1.7 not started (docs/lessons/01_data.md#task-1-7)")


def show_batch(images: torch.Tensor, labels, classes, path: str | Path, mean, std,
               ncols: int = 8) -> np.ndarray:  # fmt: skip
    """Task 1.8: save a labelled grid of normalised (N, 3, H, W) images to ``path`` (PNG).

    A grid of ``ncols`` columns, each image titled with its class name, one inch per image at
    100 dpi; the images as they were before normalisation, clipped to [0, 1].

    Returns:
        The (N, H, W, 3) float array in [0, 1] that was drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # TODO: Task 1.8 -- see docs/lessons/01_data.md#task-1-8
    raise NotImplementedError("Task 1.8 not started (docs/lessons/01_data.md#task-1-8)")


def load_cifar10(root: str | Path, val_size: int = 5000, seed: int = 0) -> dict:
    """Task 1.6: everything a training run needs from ``root/cifar-10-batches-py``.

    Read ``data_batch_1`` .. ``data_batch_5`` (train) and ``test_batch`` (test) with
    :func:`read_batch`, the class names from ``batches.meta`` (key ``b"label_names"``), hold
    out a stratified validation split of the training batches, and compute the normalisation
    statistics on what is left for TRAINING.

    Returns:
        ``{"train": (x, y), "val": (x, y), "test": (x, y), "classes": [...],
        "mean": (3,), "std": (3,)}``.
    """
    # TODO: Task 1.6 -- see docs/lessons/01_data.md#task-1-6
    raise NotImplementedError("Task 1.6 not started (docs/lessons/01_data.md#task-1-6)")
