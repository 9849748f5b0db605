"""Graded tests for lesson 01: CIFAR-10 by hand (tasks 1.1 - 1.8).

The tests write small batch files in the official layout themselves (no download), and
compare your functions with plain numpy / torch formulas.

Each test has two halves: an ``_observe_*`` function that calls your code on inputs it is
given and returns plain data (arrays, numbers, bytes), and the test itself, which makes those
inputs and checks what came back against a reference it computes.
"""

import importlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given
from hypothesis import strategies as st

from alexnet_course.data.cifar10 import py2_pickle
from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, expect_shape
from alexnet_course.grading.remote import observe

data = learner.load(__file__, "data")
# The draws are the test process's alone: the grader's worker, which sees only the observe
# halves (alexnet_course.grading.views), has no copy of alexnet_course.grading.draws.
drawn = importlib.import_module("alexnet_course.grading.draws").drawn
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
    """One CIFAR-10 batch file's bytes, channel-major rows, pickled as the official files are:
    by Python 2 (its strings and the image data are Python 2 ``str``, which ``pickle.load``'s
    ``encoding`` decides how to read)."""
    rows = imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1)  # channel-major rows
    return py2_pickle({b"data": rows, b"labels": list(map(int, labels))})


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
    files["batches.meta"] = py2_pickle(meta)
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
    return mean, std, [_kind(mean), _kind(std)]


def _kind(v) -> str:
    """What ``v`` is, as the page names it: "numpy.ndarray float64 (3,)"."""
    shape = tuple(getattr(v, "shape", ()) or ())
    return f"{type(v).__module__.split('.')[0]}.{type(v).__name__} {getattr(v, 'dtype', '-')} {shape}"


def _observe_normalize(x, z, mean, std):
    x0, z0 = x.clone(), z.clone()
    y = data.normalize(x, mean, std)
    y0 = y.clone() if isinstance(y, torch.Tensor) else y
    back = data.denormalize(y, mean, std)
    return {"y": y0, "back": back, "z": data.denormalize(z, mean, std),
            "inputs_kept": [bool(torch.equal(x, x0)), bool(torch.equal(z, z0)),
                            not isinstance(y, torch.Tensor) or bool(torch.equal(y, y0))]}  # fmt: skip


def _expect_inputs_kept(o, what: str) -> None:
    changed = [n for n, kept in zip(("normalize", "denormalize", "denormalize"), o["inputs_kept"])
               if not kept]  # fmt: skip
    expect(not changed, f"{what}: the tensor passed in", "left as it was (a new tensor returned)",
           f"changed by {changed[0]}" if changed else "", hint="compute (x - mean) / std into a "
           "new tensor: in-place ops (sub_, div_, -=) change the caller's images, which then "
           "get normalised again on the next epoch", docs=docs("1.3"))  # fmt: skip


def _observe_resize(x, size):
    return data.resize(x, size)


# The exact bilinear result (float64) is the reference: float32 arithmetic, torch's own
# F.interpolate included, lands up to about 3e-6 from it, and a more exact resize must pass too.
RESIZE_TOL = 1e-5


def _exact_resize(x, size):
    return F.interpolate(x.double(), size=(size, size), mode="bilinear", align_corners=False)


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


def _observe_defaults(labels, val_size, files: dict):
    """The calls that leave the page's defaults out, and the same calls with them given."""
    tmp = Path(tempfile.mkdtemp(prefix="cifar-"))
    try:
        _write_files(tmp / "cifar-10-batches-py", files)
        plain, given = data.load_cifar10(tmp), data.load_cifar10(tmp, 5000, 0)
        return {"split": [tuple(data.stratified_split(labels, val_size)),
                          tuple(data.stratified_split(labels, val_size, 0))],
                "val": [plain["val"][1], given["val"][1]],
                "train": [plain["train"][1], given["train"][1]]}  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _observe_keras_preprocess(x, mean, std, size):
    k = np.asarray(data.keras_preprocess(x, mean, std, size))
    return {"k": k, "dtype": str(k.dtype)}


def _expect_float32(dtype: str, what: str) -> None:
    expect_equal(dtype, "float32", f"{what}: dtype", hint="cast the uint8 images to float32 "
                 "before dividing, and keep float32 (a float64 step turns the batch into float64)",
                 docs=docs("1.7"))  # fmt: skip


def _observe_show_batch(x, labels, classes, mean, std, ncols):
    tmp = Path(tempfile.mkdtemp(prefix="grid-"))
    try:
        path = tmp / "grid.png"
        if ncols is None:  # the page's default
            shown = data.show_batch(x, labels, classes, path, mean, std)
        else:
            shown = data.show_batch(x, labels, classes, path, mean, std, ncols=ncols)
        return {"shown": shown, "png": path.read_bytes() if path.is_file() else None}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the graded tests
@pytest.mark.task("1.1", points=1)
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


@pytest.mark.task("1.2", points=1)
def test_channel_stats_match_numpy():
    x = images(16, seed=1)
    mean, std, kinds = observe(_observe_channel_stats, x)
    ref_mean, ref_std = reference_stats(x)
    for name, kind in zip(("mean", "std"), kinds):
        expect_equal(kind, "numpy.ndarray float64 (3,)", f"channel_stats {name}: type, dtype, "
                     "shape", hint="return two float64 numpy arrays of shape (3,), not lists "
                     "or tensors (np.asarray(..., dtype=np.float64))", docs=docs("1.2"))  # fmt: skip
    expect_close(mean, ref_mean, "channel_stats mean (R, G, B) in [0, 1]", atol=1e-9,
                 hint="average over every pixel of every image, per channel, of the pixels "
                 "divided by 255, in float64", docs=docs("1.2"))  # fmt: skip
    expect_close(std, ref_std, "channel_stats std (R, G, B) in [0, 1]: the population "
                 "standard deviation (ddof=0)", atol=1e-9, hint=STD_HINT,
                 docs=docs("1.2"))  # fmt: skip


@pytest.mark.task("1.3", points=1)
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
    _expect_inputs_kept(o, "normalize and denormalize")


@pytest.mark.task("1.4", points=1)
@pytest.mark.parametrize("size", [227, 16])
def test_resize(size):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got = observe(_observe_resize, x, size)
    ref = _exact_resize(x, size)
    expect_close(got, ref, f"resize to {size}", atol=RESIZE_TOL,
                 hint="bilinear, align_corners=False, antialias=False", docs=docs("1.4"))  # fmt: skip


@pytest.mark.task("1.5", points=1)
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


@pytest.mark.task("1.5", points=1)
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


@pytest.mark.task("1.6", points=1)
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


@pytest.mark.task("1.6", points=1)
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


@pytest.mark.task("1.6", points=1)
def test_split_and_loader_defaults():
    """The defaults the page gives: seed 0 for stratified_split; val_size 5000 and seed 0 for
    load_cifar10 (five batches of 1,001 images here, unbalanced classes)."""
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.repeat([3, 8, 5], [40, 25, 11]))
    files = {f"data_batch_{i}": batch_bytes(images(1001, seed=20 + i, high=128),
                                            rng.choice([0, 2, 9], 1001, p=[0.5, 0.3, 0.2]))
             for i in range(1, 6)}  # fmt: skip
    files["test_batch"] = batch_bytes(images(4, seed=30), np.arange(4))
    files["batches.meta"] = py2_pickle({b"label_names": [f"c{i}".encode() for i in range(10)]})
    o = observe(_observe_defaults, labels, 13, files)
    (tr, va), (tr0, va0) = o["split"]
    expect(np.array_equal(va, va0) and np.array_equal(tr, tr0), "stratified_split(labels, 13) "
           "against stratified_split(labels, 13, 0)", "the same split (seed=0 by default)",
           "different", hint="keep the signature's default: seed=0", docs=docs("1.6"))  # fmt: skip
    expect_equal(len(o["val"][0]), 5000, "load_cifar10(root): validation images (val_size=5000 "
                 "by default)", hint="keep the signature's defaults: val_size=5000, seed=0",
                 docs=docs("1.6"))  # fmt: skip
    expect(np.array_equal(o["val"][0], o["val"][1]) and
           np.array_equal(o["train"][0], o["train"][1]), "load_cifar10(root) against "
           "load_cifar10(root, 5000, 0)", "the same split", "different",
           hint="keep the signature's defaults: val_size=5000, seed=0", docs=docs("1.6"))  # fmt: skip


@pytest.mark.task("1.7", points=1)
@pytest.mark.parametrize("size", [None, 67])
def test_keras_preprocess_equals_torch(size):
    x = images(4, seed=4)
    o = observe(_observe_keras_preprocess, x, MEAN, STD, size)
    k = o["k"]
    t = reference_preprocess(x, size).permute(0, 2, 3, 1).numpy()
    expect_shape(k, t.shape, "keras_preprocess (NHWC: batch, height, width, channels)",
                 hint="Keras is channels LAST; torch is channels FIRST (NCHW)",
                 docs=docs("1.7"))  # fmt: skip
    expect_close(k, t, "keras_preprocess against the torch preprocessing moved to NHWC",
                 atol=1e-5, hint="float32, divide by 255, normalise, tf.image.resize with "
                 'method="bilinear" and antialias=False (only when size is given)',
                 docs=docs("1.7"))  # fmt: skip
    _expect_float32(o["dtype"], "keras_preprocess")


@pytest.mark.task("1.8", points=1)
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
    o = observe(_observe_show_batch, x, np.arange(10), classes, MEAN, STD, None)
    size = Image.open(io.BytesIO(o["png"])).size if o["png"] is not None else None
    expect_equal(size, (800, 200), "grid image size for 10 images with ncols left out (8 "
                 "columns by default: 2 rows)", hint="keep the signature's default: ncols=8",
                 docs=docs("1.8"))  # fmt: skip


# ---------------------------------------------------------------- drawn fixtures (#32)
# Inputs drawn (Hypothesis) across each task's contract: batches of any size (one image
# too), images that are not 32 x 32 nor square, labels unrelated to positions, classes
# absent or unbalanced, statistics and parameters away from CIFAR-10's and the defaults,
# sizes that do not divide, seeds. Hypothesis draws the structure (what a failure
# shrinks to); the pixels come from a drawn seed.
SEEDS = st.integers(0, 2**31 - 1)
WORDS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck", "apple", "bottle")  # fmt: skip


@st.composite
def statistics(draw):
    """(mean, std): three values each, away from CIFAR-10's, as a tuple, a list or a float64
    numpy array (what channel_stats returns)."""
    mean = [v / 100 for v in draw(st.lists(st.integers(0, 100), min_size=3, max_size=3))]
    std = [v / 100 for v in draw(st.lists(st.integers(20, 200), min_size=3, max_size=3))]
    kind = draw(st.sampled_from((tuple, list, np.array)))
    return kind(mean), kind(std)


def _stat(v):
    return torch.tensor(np.asarray(v, dtype=np.float64)).view(1, 3, 1, 1)


def drawn_images(seed, n, h, w, c=3, low=0):
    return np.random.default_rng(seed).integers(low, 256, (n, h, w, c), dtype=np.uint8)


def windows(x, out, pad):
    """For each image of ``out`` (N, H, W, C), the (flip, row offset, column offset) of the
    windows of the ``pad``-zero-padded ``x`` it equals (flip: the window flipped
    left-right), as a boolean (N, 2, 2 * pad + 1, 2 * pad + 1) array."""
    n, h, w, _ = x.shape
    padded = F.pad(x, (0, 0, pad, pad, pad, pad))
    k = 2 * pad + 1
    found = torch.zeros(n, 2, k, k, dtype=torch.bool)
    if tuple(out.shape) != tuple(x.shape):
        return found
    for oy in range(k):
        for ox in range(k):
            win = padded[:, oy : oy + h, ox : ox + w]
            found[:, 0, oy, ox] = (out == win).flatten(1).all(1)
            found[:, 1, oy, ox] = (out == win.flip(2)).flatten(1).all(1)
    return found.numpy()


def _observe_seeded_augment(x, pad, seeds):
    return [data.augment(x, torch.Generator().manual_seed(s), pad=pad) for s in seeds]


def _observe_drawn_preprocess(x, mean, std, size, batch, seeds):
    return {
        "eval": data.preprocess(x, mean, std, size=size),
        "train": [data.preprocess(batch, mean, std, train=True,
                                  generator=torch.Generator().manual_seed(s)) for s in seeds],
    }  # fmt: skip


def _observe_drawn_split(labels, val_size, seeds):
    return [tuple(data.stratified_split(labels, val_size, seed=s)) for s in seeds]


def _observe_drawn_load(files: dict, labels, val_size, seeds):
    """load_cifar10 with each seed, and the learner's own split of the training labels."""
    return [{"load": _observe_load_cifar10(files, val_size, s),
             "split": tuple(data.stratified_split(labels, val_size, seed=s))} for s in seeds]  # fmt: skip


def _observe_drawn_show_batch(x, labels, classes, mean, std, ncols):
    """show_batch, and what each panel of the figure held when it was saved: its titles and
    its images."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    saved, original = [], Figure.savefig

    def savefig(fig, *args, **kwargs):
        saved.append([{"title": " ".join(t for t in (ax.get_title(loc).strip() for loc in
                                                      ("left", "center", "right")) if t),
                       "images": [np.asarray(im.get_array(), dtype=np.float64)
                                  for im in ax.get_images()]} for ax in fig.axes])  # fmt: skip
        return original(fig, *args, **kwargs)

    Figure.savefig = savefig
    try:
        o = _observe_show_batch(x, labels, classes, mean, std, ncols)
    finally:
        Figure.savefig = original
    o["panels"] = saved[-1] if saved else None
    return o


@pytest.mark.task("1.1", points=1)
@drawn(examples=6)
@given(labels=st.lists(st.integers(0, 9), min_size=1, max_size=8), seed=SEEDS)
def test_read_batch_of_drawn_batches(labels, seed):
    """Batches of 1 to 8 images, labels in any order."""
    imgs = drawn_images(seed, len(labels), 32, 32)
    x, y = observe(_observe_read_batch, batch_bytes(imgs, labels))
    x = np.asarray(x)
    expect_shape(x, imgs.shape, f"read_batch of a batch of {len(labels)} image(s)",
                 hint="keep the batch axis, whatever the number of images (one too)",
                 docs=docs("1.1"))  # fmt: skip
    expect(x.dtype == np.uint8 and np.array_equal(x, imgs), f"read_batch pixels of {len(labels)} "
           "image(s)", "the images written, uint8", f"different pixels (dtype {x.dtype})",
           hint="reshape to the order the bytes are stored in, then move the channel axis",
           docs=docs("1.1"))  # fmt: skip
    y = np.asarray(y)
    expect_equal((y.tolist(), str(y.dtype)), (labels, "int64"), "read_batch labels (values, dtype)",
                 hint='the b"labels" list, in file order, as an int64 array', docs=docs("1.1"))  # fmt: skip


@pytest.mark.task("1.2", points=1)
@drawn(examples=15)
@given(n=st.integers(1, 6), h=st.integers(1, 12), w=st.integers(1, 12),
       lows=st.lists(st.integers(0, 255), min_size=3, max_size=3), seed=SEEDS)  # fmt: skip
def test_channel_stats_of_drawn_images(n, h, w, lows, seed):
    """Any number of images of any size (one pixel too), channels with other ranges (a
    constant channel has std 0)."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(lo, 256, (n, h, w)) for lo in lows], axis=-1).astype(np.uint8)
    mean, std, _ = observe(_observe_channel_stats, x)
    ref_mean, ref_std = reference_stats(x)
    what = f"channel_stats of {n} image(s) of {h} x {w} pixels"
    expect_close(mean, ref_mean, f"{what}: mean (R, G, B)", atol=1e-9, hint="average over every "
                 "pixel of every image, per channel, divided by 255, in float64; no fixed image "
                 "size", docs=docs("1.2"))  # fmt: skip
    expect_close(std, ref_std, f"{what}: std (R, G, B), population (ddof=0)", atol=1e-9,
                 hint=STD_HINT, docs=docs("1.2"))  # fmt: skip


@pytest.mark.task("1.3", points=1)
@drawn(examples=10)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
       stats=statistics(), dtype=st.sampled_from(("float32", "float64")), seed=SEEDS)  # fmt: skip
def test_normalize_with_drawn_statistics(shape, stats, dtype, seed):
    """Statistics of any dataset (not CIFAR-10's), as a tuple, a list or a numpy array;
    float32 and float64 images of any size (a width of 3 too)."""
    mean, std = stats
    n, h, w = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g, dtype=getattr(torch, dtype))
    z = torch.randn(n, 3, h, w, generator=g, dtype=getattr(torch, dtype))
    o = observe(_observe_normalize, x, z, mean, std)
    m, s = _stat(mean), _stat(std)
    what = f"{dtype} images {tuple(x.shape)}, mean {list(np.asarray(mean))}, std {list(np.asarray(std))}"
    tol = {"atol": 1e-5, "rtol": 1e-6} if dtype == "float32" else {"atol": 1e-9}
    for key, want, name in (("y", (x.double() - m) / s, "normalize"), ("z", z.double() * s + m,
                                                                       "denormalize")):  # fmt: skip
        got = o[key]
        expect_equal(str(getattr(got, "dtype", type(got).__name__)), str(x.dtype),
                     f"{name} of {what}: dtype", hint="make the statistics tensors with x's "
                     "dtype (and device): a float64 statistic turns float32 images into float64",
                     docs=docs("1.3"))  # fmt: skip
        expect_close(got, want, f"{name} of {what}", **tol, hint="use the mean and std you are "
                     "given, per channel, shaped (1, 3, 1, 1)", docs=docs("1.3"))  # fmt: skip
    _expect_inputs_kept(o, f"normalize and denormalize of {what}")


@pytest.mark.task("1.4", points=1)
@drawn(examples=10)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(2, 40), st.integers(2, 40)),
       size=st.integers(1, 96), seed=SEEDS)  # fmt: skip
def test_resize_drawn_sizes(shape, size, seed):
    """Inputs of any size, channels and aspect (not only 32 x 32), to any size."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    got = observe(_observe_resize, x, size)
    ref = _exact_resize(x, size)
    expect_close(got, ref, f"resize of {tuple(shape)} to {size} x {size}", atol=RESIZE_TOL,
                 hint="bilinear, align_corners=False, antialias=False, to (size, size) whatever "
                 "the input's height and width", docs=docs("1.4"))  # fmt: skip


@st.composite
def augment_cases(draw):
    """(pad, h, w, c): images of 3 to 8 pixels a side and 1 to 4 channels, a pad of 1 to 3
    smaller than each side (so every window holds pixels of the image and each tells its
    offsets apart)."""
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    return draw(st.integers(1, min(3, h - 1, w - 1))), h, w, draw(st.integers(1, 4))


@pytest.mark.task("1.5", points=1)
@drawn(examples=4)
@given(case=augment_cases(), seed=SEEDS)
def test_augment_outcomes_cover_every_crop_and_flip(case, seed):
    """1200 images of h x w x c, another pad: every output a window of the padded image,
    every (row, column) offset pair occurs (each axis uniform over 0..2 * pad, the two drawn
    separately), flips both ways about half the time, the seed decides."""
    pad, h, w, c = case
    n, k = 1200, 2 * pad + 1
    x = torch.from_numpy(drawn_images(seed, n, h, w, c, low=1))  # no zero pixel of its own
    a, b, other = observe(_observe_seeded_augment, x, pad, [seed, seed, seed + 1])
    what = f"augment(pad={pad}) of {n} images of {h} x {w} x {c}"
    expect_shape(a, tuple(x.shape), what, hint="the same (N, H, W, C) as the input",
                 docs=docs("1.5"))  # fmt: skip
    expect(a.dtype == x.dtype and torch.equal(a, b), f"{what}, twice with seed {seed}",
           "identical uint8 outputs", "different", hint="draw every random number from the "
           "generator argument", docs=docs("1.5"))  # fmt: skip
    expect(not torch.equal(a, other), f"{what} with seeds {seed} and {seed + 1}", "different",
           "identical", hint="the generator argument must decide the offsets and flips",
           docs=docs("1.5"))  # fmt: skip
    found = windows(x, a, pad)
    bad = np.flatnonzero(~found.any(axis=(1, 2, 3)))
    expect(len(bad) == 0, what, f"every image a {h} x {w} window of itself padded with {pad} "
           "zero pixels on each side, maybe flipped left-right, channels untouched",
           f"{len(bad)} image(s) that are not, the first: {bad[:1].tolist()}",
           hint="pad (and crop) only the height and width by pad, flip along the width",
           docs=docs("1.5"))  # fmt: skip
    first = found.reshape(n, -1).argmax(axis=1)  # one reading of each image
    flip, oy, ox = np.unravel_index(first, (2, k, k))
    pairs = {(int(r), int(q)) for r, q in zip(oy, ox)}
    missing = sorted({(r, q) for r in range(k) for q in range(k)} - pairs)
    expect(not missing, f"{what}: (row, column) crop offsets", f"all {k * k} pairs in 0..{k - 1} "
           "occur (each offset uniform, the two drawn separately)",
           f"{len(missing)} never occur, e.g. {missing[:4]}", hint="two draws per image, "
           "torch.randint's high is exclusive: 0..2 * pad needs 2 * pad + 1",
           docs=docs("1.5"))  # fmt: skip
    for axis, offsets in (("row", oy), ("column", ox)):
        counts = np.bincount(offsets, minlength=k)
        bound = 6 * np.sqrt(n * (1 / k) * (1 - 1 / k))
        expect(np.all(np.abs(counts - n / k) <= bound), f"{what}: {axis} offsets",
               f"each of 0..{k - 1} about {n / k:.0f} times (uniform)", counts.tolist(),
               hint="offsets drawn uniformly from 0 to 2 * pad inclusive", docs=docs("1.5"))  # fmt: skip
    flips = int(flip.sum())
    expect(abs(flips - n / 2) <= 6 * np.sqrt(n / 4), f"{what}: flipped images", f"about "
           f"{n // 2} of {n} (probability 0.5)", flips, hint="flip each image left-right with "
           "probability 0.5", docs=docs("1.5"))  # fmt: skip


@pytest.mark.task("1.5", points=1)
@drawn(examples=5)
@given(n=st.integers(1, 4), h=st.integers(3, 12), w=st.integers(3, 12),
       size=st.one_of(st.none(), st.integers(2, 40)), stats=statistics(), seed=SEEDS)  # fmt: skip
def test_preprocess_drawn_images_and_statistics(n, h, w, size, stats, seed):
    """Images of any size, statistics of any dataset, any size or none; in training, the
    augmentation on the uint8 images (channels last) from the generator given."""
    mean, std = stats
    x = drawn_images(seed, n, h, w)
    batch = drawn_images(seed + 1, 32, h, w, low=1)
    o = observe(_observe_drawn_preprocess, x, mean, std, size, batch, [seed, seed, seed + 1])
    m, s = _stat(mean), _stat(std)
    want = (torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255 - m) / s
    if size is not None:
        want = F.interpolate(want, size=(size, size), mode="bilinear", align_corners=False)
    what = (f"preprocess of {n} image(s) of {h} x {w}, size={size}, mean {list(np.asarray(mean))}, "
            f"std {list(np.asarray(std))}")  # fmt: skip
    got = o["eval"]
    expect_equal(str(getattr(got, "dtype", type(got).__name__)), "torch.float32",
                 f"{what}: dtype", hint="float32 images", docs=docs("1.5"))  # fmt: skip
    expect_close(got, want, f"{what}, at evaluation", atol=1e-5, rtol=1e-6, hint="scale, channels "
                 "first, normalise with the statistics given, resize to (size, size) when a "
                 "size is given", docs=docs("1.5"))  # fmt: skip
    a, b, other = o["train"]
    expect(torch.equal(a, b) and not torch.equal(a, other), f"preprocess(train=True) of 32 "
           f"images with seeds {seed}, {seed}, {seed + 1}", "the same output for the same seed, "
           "another for another", "not so", hint="augment with the generator given",
           docs=docs("1.5"))  # fmt: skip
    expect_shape(a, (32, 3, h, w), f"preprocess(train=True) of {h} x {w} images, no size",
                 hint="augmentation keeps the size; channels first", docs=docs("1.5"))  # fmt: skip
    back = torch.round((a.double() * s + m) * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    found = windows(torch.from_numpy(batch), back.contiguous(), 4)
    bad = np.flatnonzero(~found.any(axis=(1, 2, 3)))
    expect(len(bad) == 0, f"preprocess(train=True) of 32 images of {h} x {w}, un-normalised",
           "each a window of its 4-pixel zero-padded image, maybe flipped left-right",
           f"{len(bad)} that are not", hint="augment the uint8 (N, H, W, C) images first, "
           "then scale, move channels first and normalise", docs=docs("1.5"))  # fmt: skip


def reference_split_ok(labels, val_idx, val_size):
    """'' when the validation counts per class follow the page's rule: round(v * n_c / N),
    then the largest classes adjusted by one each until the total is v (which of equally
    large classes is the page does not say); else what is wrong."""
    from fractions import Fraction

    classes, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    q = [Fraction(val_size * int(c), n) for c in counts]
    r = np.array([int(v + Fraction(1, 2)) for v in q])  # no q is a half-integer here
    got = np.array([int(np.sum(labels[val_idx] == c)) for c in classes])
    d = val_size - int(r.sum())
    diff = got - r
    step = np.sign(d)
    adjusted = diff != 0
    ok = (np.all(np.isin(diff, [0, step])) and int(diff.sum()) == d and
          (not adjusted.any() or not (~adjusted).any() or
           counts[adjusted].min() >= counts[~adjusted].max()))  # fmt: skip
    return "" if ok else f"classes {classes.tolist()} of sizes {counts.tolist()}: want round(" \
        f"v * n_c / N) = {r.tolist()}, {abs(d)} of the largest adjusted by {int(step):+d}; got {got.tolist()}"


@st.composite
def class_sizes(draw):
    """Class ids unrelated to positions (some of 0..50), sizes 1 to 40 (unbalanced), a
    validation size that rarely divides, and a seed."""
    k = draw(st.integers(1, 8))
    ids = draw(st.lists(st.integers(0, 50), min_size=k, max_size=k, unique=True))
    sizes = draw(st.lists(st.integers(1, 40), min_size=k, max_size=k))
    n = sum(sizes)
    if n < 2:
        sizes[0] += 1
        n += 1
    val = draw(st.integers(1, n - 1))
    return ids, sizes, val, draw(SEEDS)


@pytest.mark.task("1.6", points=1)
@drawn(examples=30)
# eight classes of different sizes whose rounded shares add up to 3 fewer than val_size: the
# three largest get one more each (draws seldom need more than one adjustment)
@example(case=([4, 17, 0, 42, 8, 23, 11, 50], [33, 9, 37, 23, 19, 28, 35, 7], 95, 5))
@given(case=class_sizes())
def test_stratified_split_drawn_classes(case):
    """Unbalanced classes with ids unrelated to positions, labels shuffled, validation sizes
    that do not divide: the page's rounding, no overlap, every sample once, and a seed that
    decides which samples."""
    from fractions import Fraction
    from math import comb

    from hypothesis import assume

    ids, sizes, val_size, seed = case
    labels = np.random.default_rng(seed).permutation(np.repeat(ids, sizes))
    n = len(labels)
    assume(all(Fraction(2 * val_size * s, n).denominator != 1 or (2 * val_size * s // n) % 2 == 0
               for s in sizes))  # no class's share is exactly half-way (the page picks no rule)
    (tr, va), (tr2, va2), (_, va3) = observe(_observe_drawn_split, labels, val_size,
                                             [seed, seed, seed + 1])  # fmt: skip
    tr, va = np.asarray(tr, dtype=np.int64), np.asarray(va, dtype=np.int64)
    what = f"stratified_split of {n} labels (classes {ids}, sizes {sizes}), val_size={val_size}"
    expect_equal(len(va), val_size, f"{what}: validation size", hint="exactly val_size: adjust "
                 "the largest classes when the rounded counts do not add up", docs=docs("1.6"))  # fmt: skip
    expect_equal(sorted(np.concatenate([tr, va]).tolist()), list(range(n)), f"{what}: train + "
                 "validation", hint="every index once, in one of them", docs=docs("1.6"))  # fmt: skip
    wrong = reference_split_ok(labels, va, val_size)
    expect(not wrong, f"{what}: validation samples per class", "round(val_size * n_c / N), the "
           "largest classes adjusted", wrong, hint="the share of each class, rounded; then "
           "one more (or less) for the largest classes until the total is val_size",
           docs=docs("1.6"))  # fmt: skip
    expect(np.array_equal(va, np.asarray(va2)) and np.array_equal(tr, np.asarray(tr2)),
           f"{what}: seed {seed} twice", "the same split", "different",
           hint="draw with np.random.default_rng(seed)", docs=docs("1.6"))  # fmt: skip
    counts = np.bincount(np.searchsorted(np.unique(labels), labels[va]), minlength=len(ids))
    ways = np.prod([float(comb(c, int(k))) for c, k in
                    zip(np.unique(labels, return_counts=True)[1], counts)])  # fmt: skip
    if ways > 1e6:  # two seeds give the same split with probability under 1e-6
        expect(not np.array_equal(np.sort(va), np.sort(np.asarray(va3))), f"{what}: seeds "
               f"{seed} and {seed + 1}", "different validation samples", "the same",
               hint="draw each class's samples at random from the seed's generator, not the "
               "first ones", docs=docs("1.6"))  # fmt: skip


@st.composite
def cifar_folders(draw):
    """Five training batches of 4 to 10 images and a test batch of 1 to 6, 2 to 10 of the
    classes present, a validation size and a seed (the folder is made from these)."""
    sizes = draw(st.lists(st.integers(4, 10), min_size=5, max_size=5))
    present, n_test = draw(st.integers(2, 10)), draw(st.integers(1, 6))
    return sizes, present, n_test, draw(st.integers(1, sum(sizes) - 1)), draw(SEEDS)


def cifar_folder(sizes, present, n_test, seed):
    """The files of ``cifar-10-batches-py/``: labels drawn from ``present`` classes, class
    names in another order, the test images brighter; and the training images and labels,
    the test images and the names."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(10, present, replace=False)
    files, xs, ys = {}, [], []
    for i, size in enumerate(sizes, 1):
        x, y = drawn_images(seed + i, size, 32, 32) // 2, rng.choice(classes, size)
        files[f"data_batch_{i}"] = batch_bytes(x, y)
        xs.append(x)
        ys.append(y)
    test = drawn_images(seed + 9, n_test, 32, 32) // 2 + 128
    files["test_batch"] = batch_bytes(test, rng.integers(0, 10, n_test))
    names = [str(w) for w in rng.permutation(WORDS)[:10]]
    files["batches.meta"] = py2_pickle({b"label_names": [w.encode() for w in names]})
    return files, np.concatenate(xs), np.concatenate(ys), test, names


@pytest.mark.task("1.6", points=1)
@drawn(examples=5)
@given(case=cifar_folders())
def test_load_cifar10_drawn_folders(case):
    """Batches of other sizes, classes absent, other names, any val_size and seed: the split
    is stratified_split's with that seed, statistics of the training split only."""
    sizes, present, n_test, val_size, seed = case
    files, x, y, test, names = cifar_folder(sizes, present, n_test, seed)
    seeds = [seed, seed + 1]
    runs = observe(_observe_drawn_load, files, y, val_size, seeds)
    what = (f"load_cifar10(val_size={val_size}) of training batches of {sizes} images "
            f"({present} classes present)")  # fmt: skip
    for seed, run in zip(seeds, runs):
        d, (_, split_val) = run["load"], run["split"]
        (xt, yt), (xv, yv), (xs, _) = d["train"], d["val"], d["test"]
        key = f"{what}, seed={seed}"
        got = [(np.asarray(img).tobytes(), int(lab)) for img, lab in
               zip(np.concatenate([xt, xv]), np.concatenate([yt, yv]))]  # fmt: skip
        written = sorted((img.tobytes(), int(lab)) for img, lab in zip(x, y))
        expect(sorted(got) == written, f"{key}: train + val", f"the {len(y)} training images "
               "with their labels, each once", "other images, repeats or wrong labels",
               hint="read data_batch_1..5 in order; index images and labels with the same "
               "split", docs=docs("1.6"))  # fmt: skip
        want_val = sorted(x[np.asarray(split_val, dtype=np.int64)].reshape(len(split_val), -1).tolist())
        expect(len(xv) == val_size and sorted(np.asarray(xv).reshape(len(xv), -1).tolist()) == want_val,
               f"{key}: validation images", f"the {val_size} images stratified_split(labels, "
               f"{val_size}, seed={seed}) picks", f"{len(xv)} other images",
               hint="split with stratified_split, passing val_size and seed on",
               docs=docs("1.6"))  # fmt: skip
        expect(np.array_equal(xs, test) and list(d["classes"]) == names, f"{key}: test images "
               "and class names", "test_batch's images in order; batches.meta's names, decoded, "
               "in order", "different", hint="read test_batch with read_batch; decode "
               'b"label_names"', docs=docs("1.6"))  # fmt: skip
        ref_mean, ref_std = reference_stats(xt)
        expect_close(np.concatenate([d["mean"], d["std"]]), np.concatenate([ref_mean, ref_std]),
                     f"{key}: mean and std of the {len(xt)} TRAINING images", atol=1e-9,
                     hint="channel_stats of the training split only: not val, not test",
                     docs=docs("1.6"))  # fmt: skip


@pytest.mark.task("1.7", points=2)
@drawn(examples=8)
@given(n=st.integers(1, 3), h=st.integers(4, 12), w=st.integers(4, 12),
       size=st.one_of(st.none(), st.integers(2, 40)), stats=statistics(), seed=SEEDS)  # fmt: skip
def test_keras_preprocess_drawn_images_and_statistics(n, h, w, size, stats, seed):
    """Images of any size (not square), statistics of any dataset, resized up, down or not."""
    mean, std = stats
    x = drawn_images(seed, n, h, w)
    o = observe(_observe_keras_preprocess, x, mean, std, size)
    k = o["k"]
    want = (torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255 - _stat(mean)) / _stat(std)
    if size is not None:
        want = F.interpolate(want, size=(size, size), mode="bilinear", align_corners=False)
    want = want.permute(0, 2, 3, 1).numpy()
    what = (f"keras_preprocess of {n} image(s) of {h} x {w}, size={size}, mean "
            f"{list(np.asarray(mean))}, std {list(np.asarray(std))}")  # fmt: skip
    expect_shape(k, want.shape, what, hint="channels last; (size, size) when a size is given",
                 docs=docs("1.7"))  # fmt: skip
    expect_close(k, want, what, atol=1e-5, rtol=1e-6, hint="normalise with the mean and std "
                 'given; tf.image.resize with method="bilinear" and antialias=False',
                 docs=docs("1.7"))  # fmt: skip
    _expect_float32(o["dtype"], what)


@pytest.mark.task("1.8", points=1)
@drawn(examples=4)
@given(n=st.integers(1, 7), ncols=st.integers(1, 4), k=st.integers(2, 12), stats=statistics(),
       seed=SEEDS)  # fmt: skip
@example(n=5, ncols=3, k=12, stats=((0.3, 0.4, 0.5), (0.2, 0.25, 0.3)), seed=1)  # 2 rows, 1 short
def test_show_batch_drawn_grids(n, ncols, k, stats, seed):
    """Any number of images in any number of columns (rows rounded up), labels unrelated to
    positions, other class names and statistics: titles by label, the PNG read back."""
    from PIL import Image

    mean, std = stats
    rng = np.random.default_rng(seed)
    raw = drawn_images(seed, n, 16, 16)
    # un-normalised, the pixels span [-0.25, 1.25]: clipping to [0, 1] shows at both ends
    x = (torch.from_numpy(raw).permute(0, 3, 1, 2).double() / 255 * 1.5 - 0.25 - _stat(mean))
    x = x / _stat(std)
    x = x.float()
    labels = rng.integers(0, k, n)
    classes = [str(c) for c in rng.permutation(WORDS)[:k]]
    o = observe(_observe_drawn_show_batch, x, labels, classes, mean, std, ncols)
    what = f"show_batch of {n} image(s) in {ncols} column(s), labels {labels.tolist()}"
    want = (x.double() * _stat(std) + _stat(mean)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    expect_close(np.asarray(o["shown"]), want, f"{what}: the images drawn", atol=1e-5,
                 hint="denormalize with the mean and std given, clip to [0, 1], channels last",
                 docs=docs("1.8"))  # fmt: skip
    expect(o["png"] is not None, f"{what}: the file", "a PNG at the path given", "missing",
           docs=docs("1.8"))  # fmt: skip
    png = np.asarray(Image.open(io.BytesIO(o["png"])).convert("RGB")).astype(np.int64)
    rows = -(-n // ncols)
    expect_equal((png.shape[1], png.shape[0]), (100 * ncols, 100 * rows), f"{what}: PNG size "
                 f"({ncols} x {rows} inches at 100 dpi)", hint="as many rows as needed: the "
                 "last one may be partly empty", docs=docs("1.8"))  # fmt: skip
    coloured = int(((png.max(axis=2) - png.min(axis=2)) > 8).sum())
    expect(coloured >= 100 * n, f"{what}: the PNG read back", "the images in it", f"{coloured} "
           "coloured pixels", hint="save the figure after drawing the images", docs=docs("1.8"))  # fmt: skip
    shown_in = {}  # image index -> the title of the panel that shows it
    for panel in o["panels"] or []:
        for img in panel["images"][:1]:
            img = img / 255 if img.max() > 1.5 else img
            dist = [float(np.abs(img - w).mean()) if img.shape == w.shape else np.inf for w in want]
            if min(dist) < 0.02:
                shown_in.setdefault(int(np.argmin(dist)), panel["title"])
    expect_equal(sorted(shown_in), list(range(n)), f"{what}: the images shown in the panels "
                 "(when the figure was saved)", hint="one panel per image, showing the "
                 "un-normalised image", docs=docs("1.8"))  # fmt: skip
    for i, title in sorted(shown_in.items()):
        expect_equal(title, classes[int(labels[i])], f"{what}: the title of image {i} "
                     f"(label {int(labels[i])})", hint="classes[labels[i]]: the label's name, "
                     "not the image's position", docs=docs("1.8"))  # fmt: skip
