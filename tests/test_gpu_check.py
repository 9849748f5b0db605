"""``alexnet-course gpu-check``: the JPEG-archive converter, the dry mode end to end, and the
one-line errors for a bad archive. Nothing here needs a GPU or ../shared."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from alexnet_course.data import load_cifar10
from alexnet_course.data.cifar10 import CLASSES, FOLDER, TRAIN_FILES, DataError, read_batch
from alexnet_course.data.jpeg_archive import convert_jpeg_archive, write_jpeg_archive
from alexnet_course.data.synthetic import synthetic_images
from alexnet_course.devtools.gpu_check import clean_tail, peak_bf16_tflops, train_flops_per_image

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check(*args: str, tmp_path: Path, dry: bool = True, timeout: float = 240):
    """``python -m alexnet_course gpu-check`` as on a lent machine: from the checkout with
    PYTHONPATH=., OUT set, and an empty torch hub cache (no ImageNet weights)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path / "out"),
           "TORCH_HOME": str(tmp_path / "torch_home"), "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    env.pop("GPU_CHECK_DRY", None)
    if dry:
        env["GPU_CHECK_DRY"] = "1"
    return subprocess.run([sys.executable, "-m", "alexnet_course", "gpu-check", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_converter_round_trips_a_tiny_archive(tmp_path):
    n_train, n_test = 30, 10
    archive = write_jpeg_archive(tmp_path / "tiny.tar.gz", n_train=n_train, n_test=n_test, seed=3)
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar if m.isfile())
    assert len(names) == n_train + n_test
    assert all(n.split("/")[0] in ("train", "test") and n.split("/")[1] in CLASSES for n in names)

    done = convert_jpeg_archive(archive, tmp_path / "root")
    assert done.folder == tmp_path / "root" / FOLDER
    assert (done.n_train, done.n_test) == (n_train, n_test)
    for name in TRAIN_FILES:  # the official layout: any reader of it reads each batch file
        read_batch(done.folder / name)
    data = load_cifar10(tmp_path / "root", val_size=0)
    assert data.classes == CLASSES
    assert (len(data.train), len(data.test)) == (n_train, n_test)

    # the originals, keyed as the archive names them (class/NNNN.jpg in order of appearance)
    x, y = synthetic_images(n_train + n_test, 3)
    originals = {}
    for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        count = [0] * len(CLASSES)
        for img, label in zip(x[sl], y[sl]):
            originals[(split, f"{CLASSES[label]}_{count[label]:04d}.jpg")] = (img, label)
            count[label] += 1
    import pickle

    seen = 0
    for split, files in (("train", TRAIN_FILES), ("test", ("test_batch",))):
        for f in files:
            with open(done.folder / f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            images = np.asarray(d[b"data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for img, label, fname in zip(images, d[b"labels"], d[b"filenames"]):
                orig, orig_label = originals[(split, fname.decode())]
                assert label == orig_label
                diff = np.abs(img.astype(int) - orig.astype(int))
                # JPEG is lossy (q95, 4:4:4: ~3 levels here); another image differs by ~50
                assert diff.mean() < 6, f"{fname}: mean |difference| {diff.mean():.2f}"
                seen += 1
    assert seen == n_train + n_test
    assert abs(np.mean(done.train_mean) - x[:n_train].mean() / 255) < 0.02

    with pytest.raises(DataError, match="already exists"):  # never overwrites
        convert_jpeg_archive(archive, tmp_path / "root")


def test_converter_rejects_wrong_images_in_one_line(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buf, format="JPEG")
        info = tarfile.TarInfo("train/cat/0000.jpg")
        info.size = buf.tell()
        buf.seek(0)
        tar.addfile(info, buf)
    with pytest.raises(DataError, match="64x64, CIFAR-10 images are 32x32"):
        convert_jpeg_archive(bad, tmp_path / "root")
    assert not (tmp_path / "root" / FOLDER).exists()


@pytest.mark.slow
def test_dry_mode_runs_every_step_and_writes_its_json(tmp_path):
    archive = write_jpeg_archive(tmp_path / "cifar10-jpeg.tar.gz", n_train=50, n_test=20)
    proc = _gpu_check(str(archive), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["mode"] == "dry" and report["ok"] is True
    assert report["provenance"]["data_source"].startswith("CIFAR-10 (JPEG copy)")
    assert report["provenance"]["torch"] and report["provenance"]["date"]
    assert report["data"]["train"] == 50 and report["data"]["test"] == 20
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["pytest", "bench", "compare", "probe"]
    for s in steps.values():
        assert s["status"] in ("ok", "skipped"), s
        assert s["status"] == "ok" or s["reason"], s
        assert s["seconds"] >= 0 and "output_tail" in s and s["command"]
    # the gpu tests ran through the plugin and were skipped without CUDA: recorded, not failed
    # one test per gpu mark in lessons 02 and 03 (none of them parametrized)
    marked = sum(f.read_text().count("@pytest.mark.gpu\n")
                 for lesson in ("02_torch_pretrained", "03_torch_scratch")
                 for f in (ROOT / "lessons" / lesson).glob("test_*.py"))  # fmt: skip
    assert marked >= 3 and steps["pytest"]["tests"] == {"skipped": marked}
    assert "needs a CUDA GPU" in steps["pytest"]["note"]
    arms = {a["arm"]: a for a in steps["compare"]["arms"]}
    assert arms["torch-scratch"]["status"] == arms["torch-tv-scratch"]["status"] == "ok"
    assert arms["torch-pretrained"]["status"] == "skipped"
    assert "alexnet-owt" in arms["torch-pretrained"]["reason"]
    assert "torch-pretrained skipped" in steps["compare"]["note"]
    assert steps["bench"]["result"]["images_per_s"]["seed"] > 0
    assert steps["probe"]["result"]["images_per_second"] > 0
    sources = [r["source"] for r in report["throughput"]]
    assert "compare torch-scratch" in sources and "bench seed" in sources
    assert all(r["images_per_second"] > 0 and r["tflops"] >= 0 for r in report["throughput"])
    assert report["flops_per_image"]["lesson03"] > report["flops_per_image"]["torchvision"] > 0
    assert report["peak_bf16_tflops"] is None  # a CPU: TFLOP/s without a ratio
    assert report["compile"]["status"] == "not measured"
    text = (out / "gpu-check.txt").read_text()
    assert "every step ok or skipped with a reason" in text and "images/s" in text
    assert (out / "gpu-check.log").stat().st_size > 0
    assert (out / "compare-report.md").is_file()
    assert len(list(out.iterdir())) <= 8  # what the device tool brings back
    # published as measured, but without this machine's folders (the check's work folder is
    # under the temp folder, the interpreter's path is written python3)
    absolute = re.compile(r"(?<![\w.~])/(?:root|home|work|tmp|Users|opt|var|usr)/")
    for name in ("gpu-check.json", "gpu-check.txt", "compare-report.md"):
        text = (out / name).read_text()
        hits = [text[max(0, m.start() - 60):m.end() + 40] for m in absolute.finditer(text)]
        assert not hits, (name, hits[:3])


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "folder"])
def test_bad_archive_is_one_line_and_exit_2(tmp_path, case):
    path = tmp_path / "cifar10-jpeg.tar.gz"
    if case == "garbage":
        path.write_bytes(b"not a tar.gz at all\n" * 100)
    elif case == "folder":  # a data root must hold cifar-10-batches-py/
        path = tmp_path / "data"
        path.mkdir()
    elif case == "truncated":
        good = write_jpeg_archive(tmp_path / "good.tar.gz", n_train=20, n_test=10)
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    proc = _gpu_check(str(path), tmp_path=tmp_path, dry=case in ("garbage", "truncated"), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alexnet-course: error: ")
    assert str(path) in lines[0]
    expected = {"missing": "no such file", "folder": "a folder without cifar-10-batches-py/"}
    assert expected.get(case, "not a readable tar.gz") in lines[0]


def test_flops_are_counted_per_image_and_peaks_matched_by_name():
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    # conv: 8*8 outputs x 4 channels x 3*3*3 MACs; linear: 256 x 5; x2 FLOPs, x3 training
    assert train_flops_per_image(model, 8) == 6 * (8 * 8 * 4 * 27 + 256 * 5)
    grouped = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1, groups=2))
    assert train_flops_per_image(grouped, 2) == 6 * (2 * 2 * 4 * 3 + 2 * 2 * 4 * 2)
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == ("H100 PCIe", 756.0)
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == ("H100 SXM", 989.0)
    assert peak_bf16_tflops("NVIDIA H200") == ("H200", 989.0)
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB")[1] == 312.0
    assert peak_bf16_tflops("NVIDIA L4")[1] == 121.0 and peak_bf16_tflops("NVIDIA L40S")[1] == 362.0
    assert peak_bf16_tflops("NVIDIA A10")[1] == 125.0
    assert peak_bf16_tflops("NVIDIA GeForce RTX 4090")[1] == 165.0
    assert peak_bf16_tflops("Tesla T4") is None


def test_output_tail_keeps_the_last_state_of_progress_bars():
    text = "start\nepoch 1:  10%\repoch 1:  50%\repoch 1: 100%\ndone\n"
    assert clean_tail(text) == "start\nepoch 1: 100%\ndone"
    assert clean_tail("x" * 5000, limit=10) == "..." + "x" * 10


def test_help_works_without_the_package_installed(tmp_path):
    """From the checkout with PYTHONPATH=. only (no entry points): what a lent machine has."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "alexnet_course", "gpu-check", "--help"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "DATA" in proc.stdout and "--dry" in proc.stdout
