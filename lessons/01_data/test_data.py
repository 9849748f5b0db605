"""Graded tests for lesson 01: CIFAR-10 by hand (tasks 1.1 - 1.8).

The tests write small batch files in the official layout themselves (no download), and
compare your functions with plain numpy / torch formulas.

Each test has two halves: an ``_observe_*`` function that calls your code on inputs it is
given and returns plain data (arrays, numbers, bytes), and the test itself, which makes those
inputs and checks what came back against a reference it computes.
"""

import io
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, expect_shape
from alexnet_course.grading.remote import observe

data = learner.load(__file__, "data")
DOCS = "docs/lessons/01_data.md"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
STD_HINT = ("the population standard deviation (ddof=0: divide by N, numpy's default "
            "x.std()); torch.std() divides by N - 1 (Bessel's correction) unless "
            "correction=0; compute in float64")  # fmt: skip


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def images(n=8, seed=0, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (n, 32, 32, 3), dtype=np.uint8)


def batch_bytes(imgs, labels) -> bytes:
    """One CIFAR-10 batch file's bytes: a protocol-2 pickle with channel-major rows."""
    rows = imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1)  # channel-major rows
    return pickle.dumps({b"data": rows, b"labels": list(map(int, labels))}, protocol=2)


def cifar_files():
    """Five training batches of 40 and a test batch of 20; the TEST images are brighter.

    Returns ``(files, train_images, train_labels, test_images)``: ``files`` maps each file
    name of ``cifar-10-batches-py/`` to its bytes."""
    files, xs, ys = {}, [], []
    for i in range(1, 6):
        x, y = images(40, seed=i, high=128), np.arange(40) % 10
        files[f"data_batch_{i}"] = batch_bytes(x, y)
        xs.append(x)
        ys.append(y)
    test = images(20, seed=9, low=128)
    files["test_batch"] = batch_bytes(test, np.arange(20) % 10)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    return files, np.concatenate(xs), np.concatenate(ys), test


def reference_preprocess(imgs, size=None):
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    if size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def reference_stats(imgs):
    x = np.asarray(imgs).reshape(-1, 3).astype(np.float64) / 255
    return x.mean(0), x.std(0)  # population std (ddof=0)


def _write_files(folder: Path, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / Path(name).name).write_bytes(content)


# ---------------------------------------------------------------- observe halves
# Each runs the learner's code on the inputs it is given and returns data only.
def _observe_read_batch(content: bytes):
    tmp = Path(tempfile.mkdtemp(prefix="cifar-"))
    try:
        _write_files(tmp, {"data_batch_1": content})
        x, y = data.read_batch(tmp / "data_batch_1")
        return x, y
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _observe_channel_stats(x):
    mean, std = data.channel_stats(x)
    return mean, std


def _observe_normalize(x, z, mean, std):
    y = data.normalize(x, mean, std)
    return {"y": y, "back": data.denormalize(y, mean, std), "z": data.denormalize(z, mean, std)}


def _observe_resize(x, size):
    return data.resize(x, size)


def _observe_augment(x, seeds):
    return [data.augment(x, torch.Generator().manual_seed(s)) for s in seeds]


def _observe_preprocess(x, mean, std):
    return {
        "eval": data.preprocess(x, mean, std, size=67),
        "again": data.preprocess(x, mean, std, size=67),
        "train": data.preprocess(x, mean, std, train=True,
                                 generator=torch.Generator().manual_seed(0)),
    }  # fmt: skip


def _observe_split(labels, val_size, seed):
    first = data.stratified_split(labels, val_size, seed=seed)
    again = data.stratified_split(labels, val_size, seed=seed)
    return [tuple(first), tuple(again)]


def _observe_load_cifar10(files: dict, val_size, seed):
    tmp = Path(tempfile.mkdtemp(prefix="cifar-"))
    try:
        _write_files(tmp / "cifar-10-batches-py", files)
        d = data.load_cifar10(tmp, val_size=val_size, seed=seed)
        return {k: d.get(k) for k in ("train", "val", "test", "classes", "mean", "std")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _observe_keras_preprocess(x, mean, std, size):
    return np.asarray(data.keras_preprocess(x, mean, std, size))


def _observe_show_batch(x, labels, classes, mean, std, ncols):
    tmp = Path(tempfile.mkdtemp(prefix="grid-"))
    try:
        path = tmp / "grid.png"
        shown = data.show_batch(x, labels, classes, path, mean, std, ncols=ncols)
        return {"shown": shown, "png": path.read_bytes() if path.is_file() else None}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the graded tests
@pytest.mark.task("1.1", points=2)
def test_read_batch_layout():
    imgs = images(3)
    x, y = observe(_observe_read_batch, batch_bytes(imgs, [3, 1, 4]))
    expect_shape(x, (3, 32, 32, 3), "read_batch images (channels last)",
                 hint="reshape the (N, 3072) rows to (N, 3, 32, 32), then move the channel "
                 "axis last", docs=docs("1.1"))  # fmt: skip
    expect_equal(str(getattr(x, "dtype", type(x).__name__)), "uint8", "read_batch images dtype",
                 hint="a numpy uint8 array: keep the file's bytes as they are",
                 docs=docs("1.1"))  # fmt: skip
    expect(np.array_equal(x, imgs), "read_batch pixels", "the original images (R, G, B "
           "planes of 1024 values each, row by row)", "different pixels", hint="check the "
           "reshape to (N, 3, 32, 32) and the transpose to (N, 32, 32, 3)",
           docs=docs("1.1"))  # fmt: skip
    expect_equal(np.asarray(y).tolist(), [3, 1, 4], "read_batch labels",
                 hint='the b"labels" list of the file, in order', docs=docs("1.1"))  # fmt: skip
    expect_equal(str(np.asarray(y).dtype), "int64", "read_batch labels dtype",
                 hint="an int64 numpy array, not a Python list (the page's Traps)", docs=docs("1.1"))  # fmt: skip


@pytest.mark.task("1.2", points=2)
def test_channel_stats_match_numpy():
    x = images(16, seed=1)
    mean, std = observe(_observe_channel_stats, x)
    ref_mean, ref_std = reference_stats(x)
    expect_close(mean, ref_mean, "channel_stats mean (R, G, B) in [0, 1]", atol=1e-9,
                 hint="average over every pixel of every image, per channel, of the pixels "
                 "divided by 255, in float64", docs=docs("1.2"))  # fmt: skip
    expect_close(std, ref_std, "channel_stats std (R, G, B) in [0, 1]: the population "
                 "standard deviation (ddof=0)", atol=1e-9, hint=STD_HINT,
                 docs=docs("1.2"))  # fmt: skip


@pytest.mark.task("1.3", points=2)
def test_normalize_and_its_inverse():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 5, generator=g)
    z = torch.randn(2, 3, 4, 4, generator=g)
    o = observe(_observe_normalize, x, z, MEAN, STD)
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expect_close(o["y"], (x - m) / s, "normalize: (x - mean) / std per channel", atol=1e-6,
                 hint="mean and std broadcast over (N, 3, H, W) as shape (1, 3, 1, 1)",
                 docs=docs("1.3"))  # fmt: skip
    expect_close(o["z"], z * s + m, "denormalize: x * std + mean per channel", atol=1e-6,
                 hint="multiply by std first, then add mean; both shaped (1, 3, 1, 1)",
                 docs=docs("1.3"))  # fmt: skip
    expect_close(o["back"], x, "denormalize(normalize(x)) == x", atol=1e-6,
                 hint="denormalize undoes normalize with the same mean and std",
                 docs=docs("1.3"))  # fmt: skip


@pytest.mark.task("1.4", points=1)
@pytest.mark.parametrize("size", [67, 227, 16])
def test_resize(size):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got = observe(_observe_resize, x, size)
    ref = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    expect_close(got, ref, f"resize to {size}", atol=1e-6,
                 hint="bilinear, align_corners=False, antialias=False", docs=docs("1.4"))  # fmt: skip


@pytest.mark.task("1.5", points=2)
def test_augment_is_crop_and_flip_and_reproducible():
    x = torch.from_numpy(images(64, seed=2))
    a, b, c = observe(_observe_augment, x, [5, 5, 6])
    expect_shape(a, tuple(x.shape), "augment", hint="the same (N, H, W, C) as the input",
                 docs=docs("1.5"))  # fmt: skip
    expect_equal(str(a.dtype), str(x.dtype), "augment output dtype",
                 hint="crop and flip move pixels; they never change their type",
                 docs=docs("1.5"))  # fmt: skip
    expect(torch.equal(a, b), "augment twice with the same seed", "identical", "different",
           hint="draw every random number from the generator argument", docs=docs("1.5"))  # fmt: skip
    expect(not torch.equal(a, c), "augment with two seeds", "different", "identical",
           hint="draw the offsets and flips from the generator argument, not fixed values",
           docs=docs("1.5"))  # fmt: skip
    # every output is a (possibly flipped) 32x32 window of the zero-padded input
    padded = F.pad(x, (0, 0, 4, 4, 4, 4))
    flips, rows, cols = 0, [], []
    for i in range(len(x)):
        found = None
        for flip in (False, True):
            for oy in range(9):
                for ox in range(9):
                    win = padded[i, oy : oy + 32, ox : ox + 32]
                    if found is None and torch.equal(win.flip(1) if flip else win, a[i]):
                        found = (flip, oy, ox)
        expect(found is not None, f"augment: image {i}", "a crop of the 4-pixel zero-padded "
               "image, maybe flipped left-right", "something else", hint="pad height and "
               "width with zeros, take a 32x32 window, flip along the width axis (axis 2 of "
               "N, H, W, C)", docs=docs("1.5"))  # fmt: skip
        flips += found[0]
        rows.append(found[1])
        cols.append(found[2])
    expect(8 < flips < 56, "augment: flipped images out of 64", "about half", flips,
           hint="flip each image with probability 0.5", docs=docs("1.5"))  # fmt: skip
    spread = all(min(v) < 4 < max(v) for v in (rows, cols))
    expect(spread, "augment: crop offsets (row, column) over 64 images", "offsets on both "
           "sides of the centred crop (4) in each direction, uniform over 0..8",
           f"rows {min(rows)}..{max(rows)}, columns {min(cols)}..{max(cols)}",
           hint="torch.randint's high is exclusive: randint(0, 2 * pad + 1, ...) draws "
           "0..2 * pad", docs=docs("1.5"))  # fmt: skip


@pytest.mark.task("1.5", points=2)
def test_preprocess_train_and_eval():
    x = images(4, seed=3)
    o = observe(_observe_preprocess, x, MEAN, STD)
    got = o["eval"]
    expect_shape(got, (4, 3, 67, 67), "preprocess(size=67)",
                 hint="channels first (N, 3, H, W), then resized to size x size",
                 docs=docs("1.5"))  # fmt: skip
    expect_close(got, reference_preprocess(x, 67), "preprocess at evaluation (train=False): "
                 "scale, normalise once, resize; no augmentation", atol=1e-5,
                 hint="divide by 255, move channels first, normalize, resize (Tasks 1.3, "
                 "1.4)", docs=docs("1.5"))  # fmt: skip
    expect(torch.equal(got, o["again"]), "preprocess at evaluation twice", "identical",
           "different (is augmentation applied at evaluation?)",
           hint="augment only when train=True", docs=docs("1.5"))  # fmt: skip
    expect(not torch.equal(o["train"], reference_preprocess(x)), "preprocess(train=True)",
           "augmented", "unchanged images", hint="train=True applies augment (with the "
           "generator) before scaling", docs=docs("1.5"))  # fmt: skip


@pytest.mark.task("1.6", points=2)
def test_stratified_split():
    labels = np.repeat(np.arange(10), [30, 30, 30, 30, 30, 60, 60, 60, 60, 60])
    (tr, va), (tr2, va2) = observe(_observe_split, labels, 90, 1)
    tr, va = np.asarray(tr), np.asarray(va)
    expect_equal(len(va), 90, "validation size", hint="exactly val_size indices",
                 docs=docs("1.6"))  # fmt: skip
    expect_equal(len(np.intersect1d(tr, va)), 0, "samples in both train and validation",
                 hint="train is every index that is not in validation", docs=docs("1.6"))  # fmt: skip
    expect_equal(sorted(np.concatenate([tr, va]).tolist()), list(range(len(labels))),
                 "train + validation cover every sample once",
                 hint="return integer indices into labels, each exactly once",
                 docs=docs("1.6"))  # fmt: skip
    expect_equal(np.bincount(labels[va], minlength=10).tolist(), [6] * 5 + [12] * 5,
                 "validation samples per class (stratified)",
                 hint="class c gives round(val_size * n_c / N) samples, drawn from that "
                 "class's indices", docs=docs("1.6"))  # fmt: skip
    expect(np.array_equal(va, np.asarray(va2)) and np.array_equal(tr, np.asarray(tr2)),
           "same seed, same split", "identical", "different",
           hint="draw with np.random.default_rng(seed)", docs=docs("1.6"))  # fmt: skip


@pytest.mark.task("1.6", points=2)
def test_load_cifar10_statistics_come_from_training():
    files, train_x, train_y, test_x = cifar_files()
    d = observe(_observe_load_cifar10, files, 50, 0)
    for key in ("train", "val", "test", "classes", "mean", "std"):
        expect(d[key] is not None, f"load_cifar10 result key {key!r}", "present", "missing",
               hint='return {"train", "val", "test", "classes", "mean", "std"}',
               docs=docs("1.6"))  # fmt: skip
    (xt, yt), (xv, yv), (xs, _) = d["train"], d["val"], d["test"]
    expect_equal(len(xt) + len(xv), 200, "train + val images", hint="read all five "
                 "data_batch files (40 images each here)" if len(xt) + len(xv) < 200 else
                 "each training image goes to train or to val, never both: are the "
                 "validation indices still in train?", docs=docs("1.6"))  # fmt: skip
    expect_equal(len(xv), 50, "validation images", hint="a stratified split of val_size "
                 "samples (Task 1.6)", docs=docs("1.6"))  # fmt: skip
    expect_equal(len(xs), 20, "test images", hint="read test_batch", docs=docs("1.6"))
    written = {np.asarray(img).tobytes(): int(lab) for img, lab in zip(train_x, train_y)}
    got = [(np.asarray(img).tobytes(), int(lab)) for img, lab in
           zip(np.concatenate([xt, xv]), np.concatenate([yt, yv]))]  # fmt: skip
    ok = len({k for k, _ in got}) == 200 and all(written.get(k) == lab for k, lab in got)
    expect(ok, "train + val: the training batches' images with their labels, each once",
           "the 200 images of data_batch_1..5", "other images, repeats or wrong labels",
           hint="index images and labels with the same split indices", docs=docs("1.6"))  # fmt: skip
    expect(np.array_equal(xs, test_x), "test images", "test_batch's images, in order",
           "different images", hint="read test_batch with read_batch", docs=docs("1.6"))  # fmt: skip
    expect_equal(list(d["classes"][:2]), ["c0", "c1"], "class names",
                 hint='batches.meta\'s b"label_names", decoded to str', docs=docs("1.6"))  # fmt: skip
    ref_mean, ref_std = reference_stats(xt)
    expect_close(d["mean"], ref_mean, "mean: statistics of the TRAINING split only (these "
                 "test images are brighter)", atol=1e-9, hint="never compute statistics on "
                 "the test set (nor on the validation split)", docs=docs("1.6"))  # fmt: skip
    expect_close(d["std"], ref_std, "std: population std (ddof=0) of the TRAINING split only",
                 atol=1e-9, hint="channel_stats of the training images; " + STD_HINT,
                 docs=docs("1.6"))  # fmt: skip


@pytest.mark.task("1.7", points=2)
@pytest.mark.parametrize("size", [None, 67])
def test_keras_preprocess_equals_torch(size):
    x = images(4, seed=4)
    k = observe(_observe_keras_preprocess, x, MEAN, STD, size)
    t = reference_preprocess(x, size).permute(0, 2, 3, 1).numpy()
    expect_shape(k, t.shape, "keras_preprocess (NHWC: batch, height, width, channels)",
                 hint="Keras is channels LAST; torch is channels FIRST (NCHW)",
                 docs=docs("1.7"))  # fmt: skip
    expect_close(k, t, "keras_preprocess against the torch preprocessing moved to NHWC",
                 atol=1e-5, hint="float32, divide by 255, normalise, tf.image.resize with "
                 'method="bilinear" and antialias=False (only when size is given)',
                 docs=docs("1.7"))  # fmt: skip


@pytest.mark.task("1.8", points=2)
def test_show_batch_writes_the_grid():
    from PIL import Image

    x = reference_preprocess(images(10, seed=5))
    classes = [f"c{i}" for i in range(10)]
    o = observe(_observe_show_batch, x, np.arange(10), classes, MEAN, STD, 5)
    expect(o["png"] is not None, "show_batch output file", "a PNG at the path given",
           "missing", hint="save the figure as a PNG at the path you are given", docs=docs("1.8"))  # fmt: skip
    try:
        size = Image.open(io.BytesIO(o["png"])).size
    except Exception as e:  # noqa: BLE001 - any unreadable file is the learner's mistake
        size = f"not a readable image ({type(e).__name__})"
    expect_equal(size, (500, 200), "grid image size for 10 images in 5 columns (one inch per "
                 "image at 100 dpi)", hint="a figure ncols inches wide and nrows inches high, saved at "
                 "100 dpi; a tight bounding box would crop it (the page's Traps)",
                 docs=docs("1.8"))  # fmt: skip
    want = np.clip(images(10, seed=5) / 255.0, 0, 1)
    expect_close(np.asarray(o["shown"]), want, "the images drawn: un-normalised into [0, 1], "
                 "channels last", atol=1e-5, hint="denormalize (Task 1.3), clip to [0, 1], "
                 "permute to (N, H, W, 3)", docs=docs("1.8"))  # fmt: skip
