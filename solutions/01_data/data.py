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
    ### BEGIN SOLUTION 1.1
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), np.asarray(batch[b"labels"], dtype=np.int64)
    ### END SOLUTION 1.1


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Task 1.2: per-channel mean and standard deviation of uint8 (N, H, W, 3) images, in
    [0, 1] units (divide by 255). Compute them on the TRAINING images only: statistics of the
    test set would leak it into training.

    Returns:
        ``(mean, std)``, each a float64 numpy array of shape (3,).
    """
    ### BEGIN SOLUTION 1.2
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return x.mean(axis=0), x.std(axis=0)
    ### END SOLUTION 1.2


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Task 1.3: ``(x - mean) / std`` per channel of a float (N, 3, H, W) tensor in [0, 1], as
    a new tensor (``x`` is left as it was)."""
    ### BEGIN SOLUTION 1.3
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
    ### END SOLUTION 1.3


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Task 1.3: the inverse of :func:`normalize`: ``x * std + mean`` per channel."""
    ### BEGIN SOLUTION 1.3
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * s + m
    ### END SOLUTION 1.3


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Task 1.4: bilinear resize of (N, C, H, W) to (N, C, size, size), half-pixel centres
    (``align_corners=False``) and no antialiasing, which is what ``tf.image.resize`` does, so
    both frameworks see the same pixels."""
    ### BEGIN SOLUTION 1.4
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=False)  # fmt: skip
    ### END SOLUTION 1.4


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Task 1.5: training augmentation of uint8 (N, H, W, C) images, one draw per image.

    Pad each side with ``pad`` zero pixels, crop a random HxW window (offsets uniform in
    [0, 2 * pad]), then flip left-right with probability 0.5. Every random number comes from
    ``generator``, so a seed reproduces the output.
    """
    ### BEGIN SOLUTION 1.5
    n, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    out = padded[torch.arange(n)[:, None, None], rows, cols]  # (N, H, W, C)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(2), out)
    ### END SOLUTION 1.5


def preprocess(images: np.ndarray, mean, std, size: int | None = None, train: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """Task 1.5: uint8 (N, H, W, 3) numpy images -> normalised float32 (N, 3, size, size).

    Augment (only when ``train``: evaluation must see the images as they are), scale to
    [0, 1], move channels first, normalise, resize (when ``size`` is given).
    """
    ### BEGIN SOLUTION 1.5
    x = torch.from_numpy(np.ascontiguousarray(images))
    if train:
        x = augment(x, generator if generator is not None else torch.Generator())
    x = x.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    x = normalize(x, mean, std)
    return resize(x, size) if size is not None and tuple(x.shape[-2:]) != (size, size) else x
    ### END SOLUTION 1.5


def stratified_split(labels: np.ndarray, val_size: int, seed: int = 0):
    """Task 1.6: hold out ``val_size`` samples for validation, the same share of every class.

    Class c gives ``round(val_size * n_c / N)`` samples (add or take one each from the
    largest classes until the total is exactly ``val_size``), chosen with
    ``np.random.default_rng(seed)``.

    Returns:
        ``(train_idx, val_idx)``: int arrays (in any order) that do not overlap and cover all
        samples.
    """
    ### BEGIN SOLUTION 1.6
    labels = np.asarray(labels)
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    take = np.round(val_size * counts / n).astype(int)
    order = np.argsort(-counts, kind="stable")
    i = 0
    while take.sum() != val_size:  # fix rounding on the largest classes
        take[order[i % len(order)]] += 1 if take.sum() < val_size else -1
        i += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                          for c, k in zip(classes, take)])  # fmt: skip
    val_idx = np.sort(val)
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx
    ### END SOLUTION 1.6


def keras_preprocess(images: np.ndarray, mean, std, size: int | None = None):
    """Task 1.7: the same preprocessing (no augmentation) with TensorFlow, channels LAST: a
    float32 (N, S, S, 3) tensor equal to :func:`preprocess`'s output permuted from NCHW to
    NHWC (the same resize: bilinear, half-pixel centres, no antialiasing).
    """
    import tensorflow as tf

    ### BEGIN SOLUTION 1.7
    x = tf.cast(images, tf.float32) / 255.0  # (N, H, W, 3)
    x = (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    if size is not None and tuple(x.shape[1:3]) != (size, size):
        x = tf.image.resize(x, (size, size), method="bilinear", antialias=False)
    return x
    ### END SOLUTION 1.7


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

    ### BEGIN SOLUTION 1.8
    shown = denormalize(images.float(), mean, std).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    n = len(shown)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols, nrows), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(shown[i])
            ax.set_title(classes[int(labels[i])], fontsize=7)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return shown
    ### END SOLUTION 1.8


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
    ### BEGIN SOLUTION 1.6
    folder = Path(root) / "cifar-10-batches-py"
    parts = [read_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    with open(folder / "batches.meta", "rb") as f:
        classes = [c.decode() for c in pickle.load(f, encoding="bytes")[b"label_names"]]
    train_idx, val_idx = stratified_split(y, val_size, seed)
    mean, std = channel_stats(x[train_idx])
    return {
        "train": (x[train_idx], y[train_idx]),
        "val": (x[val_idx], y[val_idx]),
        "test": read_batch(folder / "test_batch"),
        "classes": classes,
        "mean": mean,
        "std": std,
    }
    ### END SOLUTION 1.6
