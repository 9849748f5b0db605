"""CIFAR-10 in the official python layout: read, check, download, split.

The layout (https://www.cs.toronto.edu/~kriz/cifar.html) is a folder ``cifar-10-batches-py``
with ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``: pickles whose
``b"data"`` is a uint8 array (N, 3072), channel-major (1024 red, 1024 green, 1024 blue values).
We read the files ourselves rather than through ``torchvision.datasets.CIFAR10`` so that any
copy in that layout works (torchvision checks the official md5 sums) and so that both
frameworks start from the same numpy arrays.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexnet_course import CourseError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DATA_DIR_ENV = "ALEXNET_COURSE_DATA"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(CourseError):
    """The data is missing or malformed; the message names the file and the fix."""


@dataclass
class Split:
    """Images (N, 32, 32, 3) uint8 in HWC order and labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


@dataclass
class CIFAR10:
    """Train, validation (held out of train) and test splits, with where they came from."""

    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    source: Path
    checksum: str = ""
    val_seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def default_data_dir() -> Path:
    """``$ALEXNET_COURSE_DATA`` if set, else ``./data``: the one data-root setting."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def batch_folder(root: str | os.PathLike) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` (``root`` itself if it is that folder)."""
    root = Path(root)
    return root if root.name == FOLDER else root / FOLDER


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing CIFAR-10 file (expected in {path.parent})")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, MemoryError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CIFAR-10 pickle (truncated or corrupt: "
                        f"{type(e).__name__}); re-download or regenerate it") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path: str | os.PathLike, num_classes: int = 10) -> Split:
    """Read one batch file into HWC uint8 images and int64 labels, checking everything.

    Raises:
        DataError: one line naming the file, when it is missing, not a pickle, truncated,
            or holds data of the wrong shape or labels out of range.
    """
    path = Path(path)
    d = _unpickle(path)
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path}: keys 'data' and 'labels' expected, found {sorted(d)}")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), "
                        f"found {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in [0, {num_classes - 1}], "
                        f"found [{labels.min()}, {labels.max()}]")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels.astype(np.int64))


def read_classes(folder: Path) -> tuple[str, ...]:
    meta = _unpickle(folder / META_FILE)
    names = meta.get("label_names")
    if not names:
        raise DataError(f"{folder / META_FILE}: no 'label_names'")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


NO_DATA_HINT = ("Without it: `alexnet-course compare --profile smoke` runs the whole comparison "
                "on generated data, and `alexnet-course data synth DIR` writes a small "
                "synthetic CIFAR-10 in the same layout.")


def write_batches(folder: Path, train: tuple, test: tuple, *, label: str = "") -> None:
    """Write the official layout's files into ``folder``: five training batches, one test
    batch and ``batches.meta``, pickled as the official files are (protocol 2).

    ``train`` and ``test`` are ``(images, labels)`` or ``(images, labels, file_names)``, the
    images uint8 (N, 32, 32, 3); without names each batch names its images
    ``{label}_{i:05d}.png``. ``label`` starts each batch's ``batch_label``."""

    def dump(path: Path, x, y, names, batch_label: str) -> None:
        if names is None:
            names = [f"{label.strip() or 'image'}_{i:05d}.png".encode() for i in range(len(x))]
        data = np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2).reshape(len(x), -1))
        path.write_bytes(py2_pickle({b"batch_label": batch_label.encode(),
                                     b"labels": list(map(int, y)), b"data": data,
                                     b"filenames": list(names)}))  # fmt: skip

    x, y, names = (*train, None)[:3]
    bounds = np.linspace(0, len(y), len(TRAIN_FILES) + 1).astype(int)
    for i, name in enumerate(TRAIN_FILES):
        s = slice(bounds[i], bounds[i + 1])
        dump(folder / name, x[s], y[s], None if names is None else names[s],
             f"{label}training batch {i + 1} of {len(TRAIN_FILES)}")  # fmt: skip
    xt, yt, nt = (*test, None)[:3]
    dump(folder / TEST_FILES[0], xt, yt, nt, f"{label}testing batch 1 of 1")
    (folder / META_FILE).write_bytes(py2_pickle({b"label_names": [c.encode() for c in CLASSES],
                                                 b"num_cases_per_batch": int(bounds[1]),
                                                 b"num_vis": 3072}))  # fmt: skip


def py2_pickle(obj) -> bytes:
    """``obj`` pickled as Python 2's cPickle wrote the official files (protocol 2): byte
    strings as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), which Python 3 turns into
    ``bytes`` or ``str`` by ``pickle.load``'s ``encoding`` (the default, ASCII, fails on the
    image data of the real files). ``obj`` holds dicts, lists, bytes, str, ints and numpy
    arrays (their raw data a Python 2 ``str`` too, as in the real files)."""
    import struct

    out = [b"\x80\x02"]

    def put(o) -> None:
        if isinstance(o, bytes):
            out.append(b"U" + bytes([len(o)]) + o if len(o) < 256
                       else b"T" + struct.pack("<i", len(o)) + o)  # fmt: skip
        elif isinstance(o, str):
            raw = o.encode()
            out.append(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(o, (int, np.integer)) and not isinstance(o, bool):
            out.append(b"J" + struct.pack("<i", int(o)))
        elif isinstance(o, list):
            out.append(b"](")
            for v in o:
                put(v)
            out.append(b"e")
        elif isinstance(o, dict):
            out.append(b"}(")
            for k, v in o.items():
                put(k)
                put(v)
            out.append(b"u")
        elif isinstance(o, np.ndarray):  # as Python 2's numpy reduced it: raw data as a str
            a = np.ascontiguousarray(o)
            order, code = a.dtype.str[0], a.dtype.str[1:]
            out.append(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            out.append(b"(J\x00\x00\x00\x00tU\x01b\x87R(J\x01\x00\x00\x00(")
            for d in a.shape:
                put(int(d))
            out.append(b"tcnumpy\ndtype\n")
            put(code.encode())
            out.append(b"J\x00\x00\x00\x00J\x01\x00\x00\x00\x87R(J\x03\x00\x00\x00")
            put(order.encode())
            out.append(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffJ\x00\x00\x00\x00tb\x89")
            put(a.tobytes())
            out.append(b"tb")
        else:
            raise TypeError(f"py2_pickle: {type(o).__name__} is not supported")

    put(obj)
    out.append(b".")
    return b"".join(out)


def remove_empty(made: list[Path]) -> None:
    """Remove folders a failed command created, innermost first, and only while empty."""
    for p in made:
        try:
            p.rmdir()
        except OSError:
            break


def download(root: str | os.PathLike) -> Path:
    """Fetch and extract the official archive with torchvision's md5-verified download.

    Nothing already under ``root`` is deleted; the archive is kept beside the folder.
    """
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    made = [p for p in (root, *root.parents) if not p.exists()]  # removed again on failure
    root.mkdir(parents=True, exist_ok=True)
    try:
        download_and_extract_archive(URL, download_root=str(root), md5=ARCHIVE_MD5)
    except Exception as e:  # network errors come in many types (URLError, OSError, ...)
        remove_empty(made)
        raise DataError(
            f"could not download CIFAR-10 from {URL} into {root} ({type(e).__name__}: {e}); "
            f"download it elsewhere and extract it so that {batch_folder(root)} exists. "
            f"{NO_DATA_HINT}"
        ) from None
    return batch_folder(root)


def locate(root: str | os.PathLike | None = None, download_missing: bool = False) -> Path:
    """Return the batch folder under ``root``, downloading it only when allowed and absent."""
    root = Path(root) if root is not None else default_data_dir()
    folder = batch_folder(root)
    if folder.is_dir():
        return folder
    if download_missing:
        return download(root if root.name != FOLDER else root.parent)
    raise DataError(
        f"CIFAR-10 not found: looked for {folder}. Fetch it with `alexnet-course data download` "
        f"(compare downloads it unless --no-download), or point --data-dir (or ${DATA_DIR_ENV}) "
        f"at the folder that contains {FOLDER}/. {NO_DATA_HINT}"
    )


def _hold_out(labels: np.ndarray, val_size: int, seed: int, split: Callable | None):
    n = len(labels)
    if not 0 <= val_size < n:
        raise DataError(f"a validation split of {val_size} images needs more than the {n} "
                        f"training images found: ask for fewer (--val-size)")  # fmt: skip
    if val_size == 0:
        return np.arange(n), np.empty(0, dtype=np.int64)
    if split is None:
        raise ValueError("load_cifar10(val_size > 0) needs split=: lesson 01's stratified_split")
    train_idx, val_idx = (np.asarray(i, dtype=np.int64) for i in split(labels, val_size, seed))
    if (len(val_idx) != val_size or len(np.intersect1d(train_idx, val_idx))
            or len(train_idx) + len(val_idx) != n):  # fmt: skip
        raise DataError(f"the split gave {len(train_idx)} training and {len(val_idx)} "
                        f"validation indices that do not partition the {n} training images "
                        f"into {n - val_size} + {val_size}")  # fmt: skip
    return train_idx, val_idx


def checksum(folder: Path) -> str:
    """sha256 over the batch files, in a fixed order: the data's identity in results files."""
    h = hashlib.sha256()
    for name in (*TRAIN_FILES, *TEST_FILES, META_FILE):
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def load_cifar10(
    root: str | os.PathLike | None = None,
    *,
    val_size: int = 5000,
    seed: int = 0,
    download: bool = False,
    split: Callable | None = None,
) -> CIFAR10:
    """Load train / validation / test from the official python layout.

    Args:
        root: the data root (holding ``cifar-10-batches-py``); default ``$ALEXNET_COURSE_DATA``
            or ``./data``.
        val_size: images held out of the training batches for validation.
        seed: the seed of the validation split.
        download: fetch the official archive when the folder is missing.
        split: ``split(labels, val_size, seed) -> (train_idx, val_idx)``, the hold-out: lesson
            01's ``stratified_split`` (the course teaches it; the library has none of its
            own). Needed when ``val_size`` is not 0.

    Returns:
        A :class:`CIFAR10` with uint8 HWC images and int64 labels.

    Raises:
        DataError: one line naming what is missing or malformed and how to fix it.
    """
    folder = locate(root, download_missing=download)
    classes = read_classes(folder)
    parts = [read_batch(folder / f, len(classes)) for f in TRAIN_FILES]
    full = Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
    test = read_batch(folder / TEST_FILES[0], len(classes))
    train_idx, val_idx = _hold_out(full.labels, val_size, seed, split)
    return CIFAR10(
        train=Split(full.images[train_idx], full.labels[train_idx]),
        val=Split(full.images[val_idx], full.labels[val_idx]),
        test=test,
        classes=classes,
        source=folder.resolve(),
        checksum=checksum(folder),
        val_seed=seed,
    )
