"""The PyTorch input pipeline: batches straight from uint8 tensors, no per-image PIL work.

The steps, in order, are the same as :mod:`alexnet_course.data.keras_pipeline`'s:
(training only) random crop with zero padding and horizontal flip on the 32x32 uint8
images, then scale to [0, 1], normalise with a per-channel mean and std, and resize
bilinearly (half-pixel centres, no antialias) to the model's input size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

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

    Under ``torchrun``, ``rank`` of ``world_size`` processes each yield their own contiguous
    share of every global batch of ``batch_size`` images: the shuffle and the augmentation
    draws are made for the whole global batch, alike on every rank, so N processes see
    exactly the images one process sees. A final global batch with fewer images than ranks
    is dropped in training (no rank may get an empty batch); evaluation skips empty shares.
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
        rank: int = 0,
        world_size: int = 1,
        augment_fn: Callable | None = None,
        preprocess_fn: Callable | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.images = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
        self.labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(device)
        self.batch_size = batch_size
        self.mean, self.std, self.size = tuple(mean), tuple(std), size
        self.train, self.seed, self.pad = train, seed, pad
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        # lesson 01's own functions (CPU, numpy in) where the run found them different from
        # the library's device-side ones (compare.lesson_code.LessonCode.fast_paths)
        self.augment_fn, self.preprocess_fn = augment_fn, preprocess_fn

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess_fn is None:
            return preprocess(x, self.mean, self.std, self.size, self.channels_last)
        out = self.preprocess_fn(x.cpu().numpy(), self.mean, self.std, self.size).to(x.device)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return out.float().contiguous(memory_format=fmt)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        full, rest = divmod(n, self.batch_size)
        if self.drop_last or (self.train and self.world_size > 1 and rest < self.world_size):
            return full
        return full + bool(rest)

    def _share(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of ``n`` images."""
        q, r = divmod(n, self.world_size)
        start = self.rank * q + min(self.rank, r)
        return slice(start, start + q + (self.rank < r))

    def shard_size(self) -> int:
        """How many images this rank sees in one pass."""
        n, b = len(self.labels), self.batch_size
        sizes = [min(b, n - i * b) for i in range(len(self))]
        return sum(len(range(n_b)[self._share(n_b)]) for n_b in sizes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx]
            if self.train and self.augment_fn is not None:
                x = self.augment_fn(x.cpu(), g, self.pad).to(x.device)
            elif self.train:
                x = augment(x, g, self.pad)  # draws for the whole global batch, on every rank
            y = self.labels[idx]
            if self.world_size > 1:
                share = self._share(len(idx))
                x, y = x[share], y[share]
                if len(y) == 0:
                    continue
            yield self._preprocess(x), y
        self.epoch += 1
