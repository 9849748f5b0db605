"""The PyTorch input pipeline: batches straight from uint8 tensors, no per-image PIL work.

The steps, in order, are the same as :mod:`alexnet_course.data.keras_pipeline`'s:
(training only) random crop with zero padding and horizontal flip on the 32x32 uint8
images, then scale to [0, 1], normalise with a per-channel mean and std, and resize
bilinearly (half-pixel centres, no antialias) to the model's input size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from alexnet_course.data.cifar10 import Split


def augment(
    images: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4
) -> torch.Tensor:
    """Random crop with ``pad`` zero padding and random horizontal flip, per sample.

    Args:
        images: uint8 or float tensor (N, H, W, C), channels last.
        generator: the seeded generator that makes the draws reproducible.
        pad: padding on each side before the crop.

    Returns:
        A tensor of the same shape and dtype.
    """
    n, h, w, _ = images.shape
    dev = images.device
    if pad:
        padded = F.pad(images, (0, 0, pad, pad, pad, pad))  # pads W then H of (N, H, W, C)
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # (N, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # (N, 1, W)
        images = padded[torch.arange(n, device=dev)[:, None, None], rows, cols]  # (N, H, W, C)
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    return torch.where(flip[:, None, None, None], images.flip(2), images)


def preprocess(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 (N, H, W, C) -> normalised float32 (N, C, size, size).

    Args:
        images: uint8 tensor, channels last, as read from the batch files.
        mean: per-channel mean in [0, 1] units (CIFAR-10's own or ImageNet's).
        std: per-channel std in [0, 1] units.
        size: output side; ``None`` keeps the input size.
        channels_last: return the tensor in ``torch.channels_last`` memory format.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)  # (N, C, H, W)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x = (x - m) / s
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=False)  # fmt: skip
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.contiguous() if not channels_last else x


class TorchBatches:
    """An epoch-aware iterable of ``(images, labels)`` batches built from a :class:`Split`.

    The uint8 images live on ``device`` once (on a GPU the whole of CIFAR-10 is 150 MB), and
    each batch is augmented and normalised there, so there are no worker processes to start
    and no PIL calls per image. Epoch ``e`` shuffles and augments with seed ``seed + e``:
    runs are reproducible, and a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        size: int | None = None,
        train: bool = False,
        seed: int = 0,
        pad: int = 4,
        shuffle: bool | None = None,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(device)
        self.batch_size = batch_size
        self.mean, self.std, self.size = tuple(mean), tuple(std), size
        self.train, self.seed, self.pad = train, seed, pad
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx]
            if self.train:
                x = augment(x, g, self.pad)
            yield preprocess(x, self.mean, self.std, self.size, self.channels_last), self.labels[idx]
        self.epoch += 1
