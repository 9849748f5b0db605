"""Shared fixtures of the project's own tests. Nothing here touches the network or ../shared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic CIFAR-10 in the official layout (600 train, 200 test)."""
    from alexnet_course.data import write_synthetic_cifar10

    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=600, n_test=200, seed=0)
    return root


def run_pytest(target: Path | str, *args: str, results: Path, timeout: float = 600,
               cwd: Path = ROOT, env: dict | None = None) -> tuple[int, dict, str]:  # fmt: skip
    """Run pytest in a subprocess (a fresh interpreter, as a learner or the grader would)
    and return its exit code, the Gradescope results and the output."""
    cmd = [sys.executable, "-m", "pytest", str(target), "-q", "-p", "no:cacheprovider",
           "--results-json", str(results), *args]  # fmt: skip
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env)  # fmt: skip
    data = json.loads(results.read_text()) if results.exists() else {}
    return proc.returncode, data, proc.stdout + proc.stderr


def copy_lesson(lesson: str, dest: Path, source: str = "solutions") -> Path:
    """A lesson folder with the graded tests from lessons/ and learner files from ``source``."""
    from alexnet_course.grading.stubs import learner_files

    target = dest / lesson
    target.mkdir(parents=True)
    for t in (ROOT / "lessons" / lesson).glob("test_*.py"):
        shutil.copy(t, target / t.name)
    for f in learner_files(ROOT / "solutions" / lesson):
        shutil.copy((ROOT / source / lesson / f.name), target / f.name)
    return target


@pytest.fixture(scope="session")
def fake_torch_home(tmp_path_factory) -> Path:
    """A torch hub cache holding a random AlexNet state dict under the ImageNet weights'
    file name, so the pretrained arms run offline."""
    import torch
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(),
               home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    return home


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, fake_torch_home) -> tuple[Path, str]:
    """``alexnet-course compare --profile smoke`` with every arm, once per test session."""
    import contextlib
    import io

    from alexnet_course.cli import main

    out = tmp_path_factory.mktemp("smoke") / "run"
    buf = io.StringIO()
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(fake_torch_home)
    try:
        with contextlib.redirect_stdout(buf):
            rc = main(["compare", "--profile", "smoke", "--out", str(out), "--no-download"])
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old
    assert rc == 0, buf.getvalue()[-3000:]
    return out, buf.getvalue()
