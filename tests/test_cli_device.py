"""The command line and the two device/seed helpers."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np

from alexnet_course.cli import main
from alexnet_course.device import pick_device, seed_everything


def test_help_lists_subcommands_and_version(capsys):
    out = subprocess.run([sys.executable, "-m", "alexnet_course", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for cmd in ("data", "compare", "stubs"):
        assert cmd in out
    v = subprocess.run([sys.executable, "-m", "alexnet_course", "--version"], capture_output=True,
                       text=True, check=True).stdout  # fmt: skip
    assert v.startswith("alexnet-course ")


def test_data_synth_then_info(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--n-train", "100", "--n-test", "20"]) == 0
    assert main(["data", "info", "--data-dir", str(tmp_path), "--val-size", "10"]) == 0
    out = capsys.readouterr().out
    assert "train 100 (= 90 train + 10 validation, seed 0), test 20" in out
    assert "airplane" in out and "per-channel mean" in out


def test_data_dir_from_environment(tmp_path, capsys, monkeypatch):
    main(["data", "synth", str(tmp_path), "--n-train", "50", "--n-test", "10"])
    monkeypatch.setenv("ALEXNET_COURSE_DATA", str(tmp_path))
    assert main(["data", "info", "--val-size", "5"]) == 0
    assert str(tmp_path) in capsys.readouterr().out


def test_compare_without_data_says_what_to_do_and_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    work = tmp_path / "fresh"
    work.mkdir()
    from alexnet_course.cli import main

    rc = main(["compare", "--data-dir", str(work / "data"), "--out", str(work / "runs" / "compare"),
               "--arms", "torch-scratch"])  # fmt: skip
    assert rc == 2 and list(work.iterdir()) == []


def test_errors_are_one_line_with_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alexnet_course", "data", "info", "--data-dir",
                           str(tmp_path / "missing")], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "CIFAR-10 not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_smoke_writes_results_with_provenance(smoke_run):
    out, _ = smoke_run  # the session's smoke run: one comparison serves every test
    res = json.loads((out / "torch-scratch" / "results.json").read_text())
    assert res["status"] == "ok" and res["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    assert len(res["history"]["val_accuracy"]) == 2
    assert np.array(res["confusion_matrix"]).sum() == 200
    prov = res["provenance"]
    for key in ("command", "git_commit", "versions", "device", "precision", "data_source",
                "data_sha256", "seed"):
        assert prov[key] not in (None, ""), key
    assert "| torch-scratch | ok |" in (out / "report.md").read_text()
    # every arm ran (the fixture caches a stand-in for the ImageNet weights): a crash in one
    # arm is reported, not raised, so it must be looked for
    import importlib.util

    from alexnet_course.compare.profiles import ARMS

    have_tf = importlib.util.find_spec("tensorflow") is not None
    for arm in ARMS:
        r = json.loads((out / arm / "results.json").read_text())
        want = "ok" if have_tf or arm.startswith("torch") else "skipped"
        assert r["status"] == want, (arm, r.get("reason"))


def test_unknown_arm_is_a_clear_error(tmp_path, capsys):
    assert main(["compare", "--profile", "smoke", "--arms", "tf-scratch", "--out",
                 str(tmp_path)]) == 2  # fmt: skip
    assert "unknown arm(s) tf-scratch" in capsys.readouterr().err


def test_pick_device_falls_back_to_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    assert pick_device("cpu").type == "cpu"


def test_seed_everything_reproduces_every_rng():
    import torch

    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(7)
    a = draw()
    seed_everything(7)
    assert draw() == a
