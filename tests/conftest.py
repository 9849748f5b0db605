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
