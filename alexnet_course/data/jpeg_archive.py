"""CIFAR-10 as a tar.gz of 32x32 JPEG files, converted into the official python layout.

The archive layout is an image folder, ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``
(a public JPEG re-encoding of CIFAR-10: pixels differ slightly from the official binaries,
so results measured on it are reported as "CIFAR-10 (JPEG copy)"). :func:`convert_jpeg_archive`
decodes it once and writes ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
``test_batch``, ``batches.meta``), pickled like the official files, so that
:func:`alexnet_course.data.load_cifar10` and every other reader of that layout read it.
:func:`write_jpeg_archive` writes a small archive in the same layout from generated images
(tests and ``gpu-check --dry``).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet_course.data.cifar10 import CLASSES, FOLDER, DataError, write_batches

SPLITS = ("train", "test")


@dataclass
class Converted:
    """What :func:`convert_jpeg_archive` wrote."""

    folder: Path
    n_train: int
    n_test: int
    seconds: float
    train_mean: tuple[float, float, float]  # per channel (R, G, B), in [0, 1]


def _read_archive(archive: Path) -> dict[str, list[tuple[str, int, np.ndarray]]]:
    """``{split: [(name, label, image HWC uint8), ...]}``, members read in archive order."""
    from PIL import Image, UnidentifiedImageError

    found: dict[str, list] = {s: [] for s in SPLITS}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:  # one sequential pass: no seeking back in the compressed stream
                parts = Path(m.name).parts
                if parts and parts[0] == ".":
                    parts = parts[1:]
                if not m.isfile() or len(parts) != 3 or parts[0] not in SPLITS:
                    continue
                split, cls, fname = parts
                if cls not in CLASSES:
                    raise DataError(f"{archive}: {m.name}: unknown class {cls!r} (expected one of "
                                    f"{', '.join(CLASSES)})")  # fmt: skip
                raw = tar.extractfile(m).read()
                try:
                    img = Image.open(io.BytesIO(raw)).convert("RGB")
                except (UnidentifiedImageError, OSError, SyntaxError) as e:
                    raise DataError(f"{archive}: {m.name} is not a readable image "
                                    f"({type(e).__name__})") from None  # fmt: skip
                arr = np.asarray(img, dtype=np.uint8)
                if arr.shape != (32, 32, 3):
                    raise DataError(f"{archive}: {m.name} is {arr.shape[1]}x{arr.shape[0]}, "
                                    "CIFAR-10 images are 32x32")  # fmt: skip
                found[split].append((f"{cls}/{fname}", CLASSES.index(cls), arr))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        why = " ".join(str(e).split())  # one line: tarfile's "r:*" error lists each method
        why = why if len(why) <= 160 else why[:157] + "..."
        raise DataError(f"{archive}: not a readable tar.gz of CIFAR-10 JPEGs (truncated or "
                        f"corrupt: {type(e).__name__}: {why})") from None  # fmt: skip
    for split in SPLITS:
        if not found[split]:
            raise DataError(f"{archive}: no images under {split}/<class>/ (expected the layout "
                            f"train/<class>/NNNN.jpg and test/<class>/NNNN.jpg)")  # fmt: skip
    return found


def _arrays(items: list, seed: int):
    """Images (N, 32, 32, 3), labels, file names: sorted by name, then shuffled with a fixed
    seed so that classes mix across batches as in the official files."""
    items = sorted(items, key=lambda t: t[0])
    order = np.random.default_rng(seed).permutation(len(items))
    images = np.stack([items[i][2] for i in order])
    labels = [items[i][1] for i in order]
    names = [items[i][0].replace("/", "_").encode() for i in order]
    return images, labels, names


def convert_jpeg_archive(archive: str | os.PathLike, root: str | os.PathLike) -> Converted:
    """Decode ``archive`` and write ``root/cifar-10-batches-py`` in the official layout.

    The folder is written under a temporary name and renamed when complete, so an
    interrupted conversion leaves no half folder behind; an existing folder is never
    overwritten.

    Raises:
        DataError: one line, when the archive is missing, not a readable tar.gz, holds an
            image that is not 32x32 or a class that CIFAR-10 does not have, or when the
            destination already exists.
    """
    archive, root = Path(archive), Path(root)
    if not archive.is_file():
        raise DataError(f"{archive}: no such file (expected the CIFAR-10 JPEG archive, "
                        "train/<class>/NNNN.jpg and test/<class>/NNNN.jpg in a tar.gz)")  # fmt: skip
    dest = root / FOLDER
    if dest.exists():
        raise DataError(f"{dest} already exists; choose another folder (nothing was written)")
    t0 = time.perf_counter()
    found = _read_archive(archive)
    tmp = root / f".{FOLDER}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=False)
    x, y, n = _arrays(found["train"], seed=0)
    mean = tuple(float(v) for v in x.mean(axis=(0, 1, 2)) / 255.0)
    test = _arrays(found["test"], seed=1)
    write_batches(tmp, (x, y, n), test)
    tmp.rename(dest)
    return Converted(dest, len(y), len(test[1]), time.perf_counter() - t0, mean)  # type: ignore[arg-type]


def write_jpeg_archive(path: str | os.PathLike, n_train: int = 200, n_test: int = 50,
                       seed: int = 0, quality: int = 95) -> Path:  # fmt: skip
    """Write a small CIFAR-10 look-alike (:func:`synthetic_images`) as a JPEG archive in the
    layout of the CIFAR-10 JPEG copy: ``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``."""
    from PIL import Image

    from alexnet_course.data.synthetic import synthetic_images

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = synthetic_images(n_train + n_test, seed)
    with tarfile.open(path, "w:gz") as tar:
        for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
            count = [0] * len(CLASSES)
            for img, label in zip(x[sl], y[sl]):
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=0)
                info = tarfile.TarInfo(f"{split}/{CLASSES[label]}/{count[label]:04d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
                count[label] += 1
    return path
