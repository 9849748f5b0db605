"""CIFAR-10 reading, checks, splits, download errors and the two framework pipelines, on
generated data (no network, no ../shared)."""

from __future__ import annotations

import pickle
import shutil
import urllib.error

import numpy as np
import pytest

from alexnet_course.course import load_lesson_module
from alexnet_course.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataError,
    synthetic_images,
    write_synthetic_cifar10,
)
from alexnet_course.data import cifar10 as cifar_mod
from alexnet_course.data import load_cifar10 as _load_cifar10

LESSON01 = load_lesson_module("01_data", "data", "solutions")  # the split the course teaches


def load_cifar10(*args, **kw):
    """The library's reader with lesson 01's stratified split (the library has none)."""
    return _load_cifar10(*args, split=LESSON01.stratified_split, **kw)


def test_reads_the_official_layout(synth_root):
    data = load_cifar10(synth_root, val_size=100, seed=0)
    assert data.train.images.shape == (500, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert data.train.labels.dtype == np.int64
    assert len(data.val) == 100 and len(data.test) == 200
    assert data.classes[0] == "airplane" and data.num_classes == 10
    assert len(data.checksum) == 64


def test_reader_matches_the_layout_byte_for_byte(tmp_path):
    """A hand-written batch: channel-major rows become HWC images."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    row = np.arange(3072, dtype=np.int64) % 256
    with open(folder / "one", "wb") as f:
        pickle.dump({b"data": row.astype(np.uint8)[None], b"labels": [7]}, f)
    split = cifar_mod.read_batch(folder / "one")
    assert split.images[0, 0, 0].tolist() == [0, 1024 % 256, 2048 % 256]  # R, G, B of pixel 0
    assert split.images[0, 0, 1, 0] == 1 and split.labels.tolist() == [7]


def test_the_split_is_the_lessons_and_is_checked(synth_root):
    """load_cifar10 holds out what lesson 01's split says, and refuses a split that does not
    partition the training images (a learner's --impl lessons run)."""
    a = load_cifar10(synth_root, val_size=100, seed=3)
    b = load_cifar10(synth_root, val_size=100, seed=3)
    assert np.array_equal(a.val.images, b.val.images)
    full = _load_cifar10(synth_root, val_size=0)
    _, val_idx = LESSON01.stratified_split(full.train.labels, 100, 3)
    assert np.array_equal(a.val.labels, full.train.labels[np.sort(val_idx)])
    with pytest.raises(ValueError, match="split="):
        _load_cifar10(synth_root, val_size=100)
    overlapping = lambda labels, k, seed: (np.arange(len(labels)), np.arange(k))  # noqa: E731
    with pytest.raises(DataError, match="do not partition"):
        _load_cifar10(synth_root, val_size=100, split=overlapping)
    # one line for the command line, not a traceback (`data info` on a small synthetic copy)
    with pytest.raises(DataError, match="validation split of 600 images needs more than the 600"):
        _load_cifar10(synth_root, val_size=600, split=LESSON01.stratified_split)


def test_missing_folder_without_download_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "nowhere")
    msg = str(e.value)
    assert "nowhere/cifar-10-batches-py" in msg and "\n" not in msg
    # every command the message names exists (the README once named a missing flag)
    # commands that work in the instructor's checkout and in a learner's copy alike
    assert "alexnet-course data download" in msg and "compare --profile smoke" in msg
    assert "alexnet-course data synth DIR" in msg


def test_download_failure_is_one_clear_line_and_deletes_nothing(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    keep = tmp_path / "mine.txt"
    keep.write_text("precious")

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path, download=True)
    assert "could not download" in str(e.value) and str(tmp_path) in str(e.value)
    assert keep.read_text() == "precious"


def test_download_uses_torchvisions_verified_download(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = {}

    def fake(url, download_root, md5):
        calls.update(url=url, md5=md5)
        write_synthetic_cifar10(download_root, n_train=50, n_test=10)

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake)
    data = load_cifar10(tmp_path, download=True, val_size=10)
    assert calls["md5"] == cifar_mod.ARCHIVE_MD5 and calls["url"].startswith("https://")
    assert len(data.test) == 10


@pytest.fixture
def copy_root(synth_root, tmp_path):
    shutil.copytree(synth_root, tmp_path / "c")
    return tmp_path / "c", tmp_path / "c" / "cifar-10-batches-py"


def _corrupt(folder, name, payload):
    path = folder / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    return path


@pytest.mark.parametrize("case, payload, expect", [
    ("truncated", "TRUNCATE", "truncated or corrupt"),
    ("not a pickle", b"this is not a pickle at all", "truncated or corrupt"),
    ("wrong shape", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, "(N, 3072)"),
    ("labels out of range", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
     "labels must lie in [0, 9]"),
    ("missing key", {b"data": np.zeros((2, 3072), np.uint8)}, "keys 'data' and 'labels'"),
    ("count mismatch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels of shape"),
])  # fmt: skip
def test_malformed_batch_files_name_the_file(copy_root, case, payload, expect):
    root, folder = copy_root
    if payload == "TRUNCATE":
        raw = (folder / "data_batch_3").read_bytes()
        payload = raw[: len(raw) // 2]
    before = {p.name: p.stat().st_size for p in folder.iterdir()}
    path = _corrupt(folder, "data_batch_3", payload)
    with pytest.raises(DataError) as e:
        load_cifar10(root, val_size=10)
    msg = str(e.value)
    assert str(path) in msg and expect in msg and "\n" not in msg
    assert {p.name for p in folder.iterdir()} == set(before)  # nothing deleted


def test_missing_batch_file_is_named(copy_root):
    root, folder = copy_root
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch: missing"):
        load_cifar10(root, val_size=10)


def test_synthetic_refuses_to_overwrite(synth_root):
    with pytest.raises(DataError, match="already exists"):
        write_synthetic_cifar10(synth_root)


def test_synthetic_is_deterministic_and_learnable():
    x1, y1 = synthetic_images(400, seed=5)
    x2, y2 = synthetic_images(400, seed=5)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [40] * 10
    # a nearest-centroid classifier on raw pixels is far above chance (10%)
    xt, yt = synthetic_images(200, seed=6)
    f = lambda x: x.reshape(len(x), -1).astype(np.float64)  # noqa: E731
    centroids = np.stack([f(x1)[y1 == c].mean(0) for c in range(10)])
    pred = np.argmin(((f(xt)[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (pred == yt).mean() > 0.5


# ---------------------------------------------------------------- pipelines
torch = pytest.importorskip("torch")


def _batches(split, **kw):
    from alexnet_course.data.torch_pipeline import TorchBatches

    return TorchBatches(split, batch_size=16, mean=CIFAR10_MEAN, std=CIFAR10_STD, **kw)


def test_torch_pipeline_shapes_and_normalisation(synth_root):
    data = load_cifar10(synth_root, val_size=100)
    x, y = next(iter(_batches(data.test, size=67)))
    assert x.shape == (16, 3, 67, 67) and x.dtype == torch.float32 and y.dtype == torch.int64
    x32, _ = next(iter(_batches(data.test)))
    expect = (data.test.images[:16].transpose(0, 3, 1, 2) / 255.0
              - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(CIFAR10_STD)[:, None, None]
    assert np.allclose(x32.numpy(), expect, atol=1e-6)


def test_torch_augmentation_is_seeded_and_changes_images(synth_root):
    data = load_cifar10(synth_root, val_size=100)
    a = [b[0] for b in _batches(data.train, train=True, seed=1)]
    b = [b[0] for b in _batches(data.train, train=True, seed=1)]
    c = [b[0] for b in _batches(data.train, train=True, seed=2)]
    plain = [b[0] for b in _batches(data.train, shuffle=True, seed=1)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
    assert not all(torch.equal(p, q) for p, q in zip(a, plain))  # same order, augmented


def test_torch_augmentation_is_crop_and_flip():
    from alexnet_course.data.torch_pipeline import augment

    img = torch.arange(2 * 4 * 4 * 1, dtype=torch.uint8).view(2, 4, 4, 1)
    g = torch.Generator().manual_seed(0)
    out = augment(img, g, pad=0)  # flip only
    for i in range(2):
        assert torch.equal(out[i], img[i]) or torch.equal(out[i], img[i].flip(1))
    out = augment(img, torch.Generator().manual_seed(0), pad=1)
    assert out.shape == img.shape


def test_epochs_reshuffle_and_resume_identically(synth_root):
    data = load_cifar10(synth_root, val_size=100)
    loader = _batches(data.train, train=True, seed=0)
    first = [y for _, y in loader]
    second = [y for _, y in loader]  # epoch 1
    resumed = _batches(data.train, train=True, seed=0)
    resumed.set_epoch(1)
    assert not all(torch.equal(p, q) for p, q in zip(first, second))
    assert all(torch.equal(p, q) for p, q in zip(second, [y for _, y in resumed]))


@pytest.mark.own_process  # TensorFlow stays out of the worker (#30)
@pytest.mark.parametrize("size", [32, 67, 227])
def test_keras_and_torch_pipelines_agree_without_augmentation(synth_root, size):
    pytest.importorskip("tensorflow")
    from alexnet_course.data.keras_pipeline import make_dataset

    data = load_cifar10(synth_root, val_size=100)
    xt, yt = next(iter(_batches(data.test, size=size)))
    ds = make_dataset(data.test, batch_size=16, mean=CIFAR10_MEAN, std=CIFAR10_STD, size=size)
    xk, yk = next(iter(ds))
    nhwc = xt.permute(0, 2, 3, 1).numpy()  # torch is NCHW, Keras NHWC
    assert xk.shape == nhwc.shape
    assert np.abs(xk.numpy() - nhwc).max() < 1e-5
    assert np.array_equal(yk.numpy(), yt.numpy())


@pytest.mark.own_process  # TensorFlow stays out of the worker (#30)
def test_keras_augmentation_is_seeded(synth_root):
    pytest.importorskip("tensorflow")
    from alexnet_course.data.keras_pipeline import make_dataset

    data = load_cifar10(synth_root, val_size=100)
    kw = dict(batch_size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD, train=True)
    a = next(iter(make_dataset(data.train, seed=1, **kw)))[0].numpy()
    b = next(iter(make_dataset(data.train, seed=1, **kw)))[0].numpy()
    plain = next(iter(make_dataset(data.train, seed=1, shuffle=True, **{**kw, "train": False})))
    assert np.array_equal(a, b)
    assert a.shape == (32, 32, 32, 3) and not np.array_equal(a, plain[0].numpy())


def test_the_library_fast_path_equals_lesson_01(synth_root):
    """Where the torch arms batch with the library's device-side augmentation and
    preprocessing, they compute what lesson 01's functions compute on the same inputs (the
    same generator draws), at several sizes and seeds; a run records which it used."""
    from alexnet_course.compare.lesson_code import LessonCode
    from alexnet_course.data import torch_pipeline as tp

    data = load_cifar10(synth_root, val_size=100)
    for seed in (0, 1, 7):
        images = torch.from_numpy(data.train.images[seed * 16 : seed * 16 + 16])
        a = tp.augment(images, torch.Generator().manual_seed(seed))
        b = LESSON01.augment(images, torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
        for size in (None, 67, 227):
            x = tp.preprocess(a, CIFAR10_MEAN, CIFAR10_STD, size)
            y = LESSON01.preprocess(a.numpy(), CIFAR10_MEAN, CIFAR10_STD, size)
            assert torch.allclose(x, y, atol=1e-5)
    record = LessonCode("solutions").fast_paths()
    assert record["augment"].startswith("library") and record["preprocess"].startswith("library")
