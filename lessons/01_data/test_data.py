"""Graded tests for lesson 01: CIFAR-10 by hand (tasks 1.1 - 1.8).

The tests write small batch files in the official layout themselves (no download), and
compare your functions with plain numpy / torch formulas.
"""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, expect_shape

data = learner.load(__file__, "data")
DOCS = "docs/lessons/01_data.md"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def images(n=8, seed=0, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (n, 32, 32, 3), dtype=np.uint8)


def write_batch(path, imgs, labels):
    rows = imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1)  # channel-major rows
    with open(path, "wb") as f:
        pickle.dump({b"data": rows, b"labels": list(map(int, labels))}, f, protocol=2)


@pytest.fixture
def cifar_root(tmp_path):
    """Five training batches of 40 and a test batch of 20; the TEST images are brighter."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", images(40, seed=i, high=128), np.arange(40) % 10)
    write_batch(folder / "test_batch", images(20, seed=9, low=128), np.arange(20) % 10)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    return tmp_path


def reference_preprocess(imgs, size=None):
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    if size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


@pytest.mark.task("1.1", points=2)
def test_read_batch_layout(tmp_path):
    imgs = images(3)
    write_batch(tmp_path / "b", imgs, [3, 1, 4])
    x, y = data.read_batch(tmp_path / "b")
    expect_shape(x, (3, 32, 32, 3), "read_batch images (channels last)", docs=docs("1.1"))
    expect_equal(str(x.dtype), "uint8", "read_batch images dtype", docs=docs("1.1"))
    expect(np.array_equal(x, imgs), "read_batch pixels", "the original images (R, G, B "
           "planes of 1024 values each, row by row)", "different pixels: check the reshape "
           "to (N, 3, 32, 32) and the transpose to (N, 32, 32, 3)", docs=docs("1.1"))  # fmt: skip
    expect_equal(np.asarray(y).tolist(), [3, 1, 4], "read_batch labels", docs=docs("1.1"))
    expect_equal(str(np.asarray(y).dtype), "int64", "read_batch labels dtype", docs=docs("1.1"))


@pytest.mark.task("1.2", points=2)
def test_channel_stats_match_numpy():
    x = images(16, seed=1)
    mean, std = data.channel_stats(x)
    ref = x.reshape(-1, 3).astype(np.float64) / 255
    expect_close(mean, ref.mean(0), "channel_stats mean (R, G, B) in [0, 1]", atol=1e-9,
                 docs=docs("1.2"))  # fmt: skip
    expect_close(std, ref.std(0), "channel_stats std (R, G, B) in [0, 1]", atol=1e-9,
                 docs=docs("1.2"))  # fmt: skip


@pytest.mark.task("1.3", points=2)
def test_normalize_and_its_inverse():
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    y = data.normalize(x, MEAN, STD)
    ref = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    expect_close(y, ref, "normalize: (x - mean) / std per channel", atol=1e-6,
                 hint="mean and std broadcast over (N, 3, H, W) as shape (1, 3, 1, 1)",
                 docs=docs("1.3"))  # fmt: skip
    expect_close(data.denormalize(y, MEAN, STD), x, "denormalize(normalize(x)) == x",
                 atol=1e-6, docs=docs("1.3"))  # fmt: skip


@pytest.mark.task("1.4", points=1)
@pytest.mark.parametrize("size", [67, 227, 16])
def test_resize(size):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got = data.resize(x, size)
    ref = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    expect_close(got, ref, f"resize to {size}", atol=1e-6,
                 hint="bilinear, align_corners=False, antialias=False", docs=docs("1.4"))


@pytest.mark.task("1.5", points=2)
def test_augment_is_crop_and_flip_and_reproducible():
    x = torch.from_numpy(images(64, seed=2))
    a = data.augment(x, torch.Generator().manual_seed(5))
    b = data.augment(x, torch.Generator().manual_seed(5))
    c = data.augment(x, torch.Generator().manual_seed(6))
    expect_shape(a, tuple(x.shape), "augment", docs=docs("1.5"))
    expect(torch.equal(a, b), "augment twice with the same seed", "identical", "different",
           hint="draw every random number from the generator argument", docs=docs("1.5"))
    expect(not torch.equal(a, c), "augment with two seeds", "different", "identical",
           docs=docs("1.5"))  # fmt: skip
    # every output is a (possibly flipped) 32x32 window of the zero-padded input
    padded = F.pad(x, (0, 0, 4, 4, 4, 4))
    flips = 0
    for i in range(len(x)):
        found = None
        for flip in (False, True):
            for oy in range(9):
                for ox in range(9):
                    win = padded[i, oy : oy + 32, ox : ox + 32]
                    if torch.equal(win.flip(1) if flip else win, a[i]):
                        found = flip
        expect(found is not None, f"augment: image {i}", "a crop of the 4-pixel zero-padded "
               "image, maybe flipped left-right", "something else", docs=docs("1.5"))  # fmt: skip
        flips += bool(found)
    expect(8 < flips < 56, "augment: flipped images out of 64", "about half", flips,
           docs=docs("1.5"))  # fmt: skip


@pytest.mark.task("1.5", points=2)
def test_preprocess_train_and_eval():
    x = images(4, seed=3)
    got = data.preprocess(x, MEAN, STD, size=67)
    expect_shape(got, (4, 3, 67, 67), "preprocess(size=67)", docs=docs("1.5"))
    expect_close(got, reference_preprocess(x, 67), "preprocess at evaluation (train=False): "
                 "scale, normalise once, resize; no augmentation", atol=1e-5,
                 docs=docs("1.5"))  # fmt: skip
    again = data.preprocess(x, MEAN, STD, size=67)
    expect(torch.equal(got, again), "preprocess at evaluation twice", "identical",
           "different (is augmentation applied at evaluation?)", docs=docs("1.5"))
    tr = data.preprocess(x, MEAN, STD, train=True, generator=torch.Generator().manual_seed(0))
    expect(not torch.equal(tr, reference_preprocess(x)), "preprocess(train=True)",
           "augmented", "unchanged images", docs=docs("1.5"))  # fmt: skip


@pytest.mark.task("1.6", points=2)
def test_stratified_split():
    labels = np.repeat(np.arange(10), [30, 30, 30, 30, 30, 60, 60, 60, 60, 60])
    tr, va = data.stratified_split(labels, 90, seed=1)
    expect_equal(len(va), 90, "validation size", docs=docs("1.6"))
    expect_equal(len(np.intersect1d(tr, va)), 0, "samples in both train and validation",
                 docs=docs("1.6"))  # fmt: skip
    expect_equal(sorted(np.concatenate([tr, va]).tolist()), list(range(len(labels))),
                 "train + validation cover every sample once", docs=docs("1.6"))  # fmt: skip
    expect_equal(np.bincount(labels[va], minlength=10).tolist(), [6] * 5 + [12] * 5,
                 "validation samples per class (stratified)", docs=docs("1.6"))  # fmt: skip
    tr2, va2 = data.stratified_split(labels, 90, seed=1)
    expect(np.array_equal(va, va2), "same seed, same split", "identical", "different",
           docs=docs("1.6"))  # fmt: skip


@pytest.mark.task("1.6", points=2)
def test_load_cifar10_statistics_come_from_training(cifar_root):
    d = data.load_cifar10(cifar_root, val_size=50, seed=0)
    expect_equal(len(d["train"][0]) + len(d["val"][0]), 200, "train + val images",
                 docs=docs("1.6"))  # fmt: skip
    expect_equal(len(d["test"][0]), 20, "test images", docs=docs("1.6"))
    expect_equal(d["classes"][:2], ["c0", "c1"], "class names", docs=docs("1.6"))
    mean, _ = d["mean"], d["std"]
    ref = d["train"][0].reshape(-1, 3).astype(np.float64).mean(0) / 255
    expect_close(mean, ref, "mean: statistics of the TRAINING split only (these test images "
                 "are brighter)", atol=1e-9, hint="never compute statistics on the test set",
                 docs=docs("1.6"))  # fmt: skip


@pytest.mark.task("1.7", points=2)
@pytest.mark.parametrize("size", [None, 67])
def test_keras_preprocess_equals_torch(size):
    x = images(4, seed=4)
    k = np.asarray(data.keras_preprocess(x, MEAN, STD, size))
    t = reference_preprocess(x, size).permute(0, 2, 3, 1).numpy()
    expect_shape(k, t.shape, "keras_preprocess (NHWC: batch, height, width, channels)",
                 hint="Keras is channels LAST; torch is channels FIRST (NCHW)",
                 docs=docs("1.7"))  # fmt: skip
    expect_close(k, t, "keras_preprocess against the torch preprocessing moved to NHWC",
                 atol=1e-5, docs=docs("1.7"))  # fmt: skip


@pytest.mark.task("1.8", points=2)
def test_show_batch_writes_the_grid(tmp_path):
    from PIL import Image

    x = reference_preprocess(images(10, seed=5))
    path = tmp_path / "grid.png"
    shown = data.show_batch(x, np.arange(10), [f"c{i}" for i in range(10)], path, MEAN, STD,
                            ncols=5)  # fmt: skip
    expect(path.is_file(), "show_batch output file", str(path), "missing", docs=docs("1.8"))
    expect_equal(Image.open(path).size, (500, 200), "grid image size for 10 images in 5 "
                 "columns (one inch per image at 100 dpi)", docs=docs("1.8"))  # fmt: skip
    want = np.clip(images(10, seed=5) / 255.0, 0, 1)
    expect_close(np.asarray(shown), want, "the images drawn: un-normalised into [0, 1], "
                 "channels last", atol=1e-5, docs=docs("1.8"))  # fmt: skip
