"""The learner's copy (#29): ``alexnet-course release`` writes a start page for learners that
names only commands that work in the copy, and this test runs every one of them, on the
release as written (every lesson a stub: the "not started" view) and on the same release
with the solutions' files as the learner's (every lesson done).

The copies use the project's virtual environment (their ``.venv`` links to its folders, with
the learner Makefile's install stamp, so no command installs anything) with the copy's own
library first on the path (``PYTHONPATH``), as a learner's editable install would give it.
Lesson commands run with ``-m`` selections, and the finished copy's comparison with one arm
and one epoch, to stay fast and within the suite's memory limit; the whole ``make test`` of
a finished copy is green with no warning (measured: README's number).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from alexnet_course.authoring.release import release
from tests.conftest import ROOT

FORBIDDEN = ["--solutions", "solutions/", "tests/", "site check", "site-check", "screenshots",
             "notebooks", "alexnet-course stubs", "devtools", "make compare", "186 tests"]  # fmt: skip
COMMAND_START = ("make ", ".venv/bin/", "alexnet-course ")


def readme_commands(text: str) -> set[str]:
    """Every command the README names: each line of its ```bash blocks (comments dropped)
    and each inline code span that starts like a command."""
    commands = set()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line:
                commands.add(line)
    commands |= {c for c in re.findall(r"`([^`\n]+)`", text) if c.startswith(COMMAND_START)}
    return commands


def _learner_venv(copy: Path) -> None:
    venv = copy / ".venv"
    venv.mkdir()
    for name in ("bin", "lib", "lib64", "include", "pyvenv.cfg"):
        if (ROOT / ".venv" / name).exists():
            (venv / name).symlink_to(ROOT / ".venv" / name)
    (venv / ".installed-learner").touch()  # the Makefile's install stamp: nothing to install


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("learner")
    stubs, done = base / "stubs" / "course", base / "done" / "course"
    release(ROOT, stubs)
    release(ROOT, done)
    for lesson in (ROOT / "solutions").iterdir():
        for f in lesson.glob("*.py"):
            shutil.copy(f, done / "lessons" / lesson.name / f.name)
    for copy in (stubs, done):
        _learner_venv(copy)
    return {"stubs": stubs, "done": done}


def run(copy: Path, command: str, timeout: float = 600) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALEXNET_COURSE_", "PYTEST_"))}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", NO_MKDOCS_2_WARNING="1",
               TORCH_HOME=str(copy / ".torch"))  # no ImageNet weights: those arms skip  # fmt: skip
    proc = subprocess.run(command, shell=True, cwd=copy, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def _serve(copy: Path) -> str:
    """``make serve`` on a free port: the set-up page as served, then the server stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(copy), "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.Popen(f"make serve ADDR=127.0.0.1:{port}", shell=True, cwd=copy, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/setup/", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                time.sleep(1)
        raise AssertionError("make serve did not serve the site within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_copy_has_a_learners_readme_makefile_and_settings(copies):
    copy = copies["stubs"]
    readme = (copy / "README.md").read_text()
    assert readme.startswith("# alexnet-course: your copy") and "## Start here" in readme
    assert [f for f in FORBIDDEN if f in readme] == []
    for lesson in sorted(p.name for p in (copy / "lessons").iterdir() if p.is_dir()):
        assert f"| `{lesson}` |" in readme, lesson  # every lesson in the table, with its needs
    assert "Lesson 01 needs no CIFAR-10 download" in readme
    assert (copy / "docs" / "setup.md").read_text().startswith("# Set-up\n")
    assert 'testpaths = ["lessons"]' in (copy / "pyproject.toml").read_text()
    makefile = (copy / "Makefile").read_text()
    # the instructor's --solutions says at once that the copy has none (it failed every test)
    rc, out = run(copy, ".venv/bin/pytest lessons/05_analysis --solutions")
    assert rc == 4 and "this copy of the course has no solutions/" in out, out[-2000:]
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    assert targets == {"install", "test", "serve", "clean"}, targets  # no project-only target
    assert " -n " not in makefile  # one pytest process: the score table sees every test


@pytest.mark.slow
def test_every_command_the_readme_names_works_in_the_copy(copies):
    stubs, done = copies["stubs"], copies["done"]
    named = readme_commands((stubs / "README.md").read_text())
    checked: set[str] = set()

    def check(command: str, copy: Path, rc_ok, *must_say: str, args: str = "",
              named_as: str | None = None) -> str:  # fmt: skip
        rc, out = run(copy, f"{command} {args}".strip())
        assert rc_ok(rc), (command, copy.parent.name, rc, out[-3000:])
        missing = [m for m in must_say if m not in out]
        assert not missing, (command, copy.parent.name, missing, out[-3000:])
        assert "PytestConfigWarning" not in out and "warnings summary" not in out, out[-3000:]
        checked.add(named_as or command)
        return out

    failed, ok = (lambda rc: rc != 0), (lambda rc: rc == 0)
    # the "not started" view: a task of every lesson (all of lesson 04's stubs in one process
    # take 4.2 GB, over the suite's memory limit), then the start page's first commands
    first = "'task1_1 or task2_1 or task3_1 or task4_1 or task5_1'"
    out = check("make test", stubs, failed, "01_data: 0/2", "02_torch_pretrained: 0/5",
                "03_torch_scratch: 0/3", "04_keras_scratch: 0/2", "05_analysis: 0/3", "NOT STARTED",
                args=f'PYTEST_ARGS="-m {first}"')  # fmt: skip
    assert " done" not in out and "to do" not in out
    check("make test LESSON=01_data", stubs, failed, "01_data               1.1        0/2       "
          "0/2  not started", "01_data: 0/24")  # fmt: skip
    check(".venv/bin/pytest lessons/01_data -m task1_1", stubs, failed, "not started: Task 1.1")
    check(".venv/bin/pytest lessons/05_analysis", stubs, failed, "05_analysis: 0/13",
          named_as=".venv/bin/pytest lessons/NN_name")  # fmt: skip
    # the comparison stops at once, in one line naming the unfinished task and its page
    check(".venv/bin/alexnet-course data synth data", stubs, ok, "wrote a synthetic CIFAR-10",
          named_as="alexnet-course data synth data")  # fmt: skip
    for command in (".venv/bin/alexnet-course compare --impl lessons --profile smoke",
                    ".venv/bin/alexnet-course compare --impl lessons --budget-minutes 60"):  # fmt: skip
        out = check(command, stubs, failed, "is not done yet (Task 1.", "docs/lessons/01_data.md#task-1-")
        assert len(out.strip().splitlines()) == 1, out
    # the finished copy: every lesson done, selections of each
    check("make test LESSON=01_data", done, ok, "01_data: 24/24")
    check(".venv/bin/pytest lessons/01_data -m task1_1", done, ok, "1.1        2/2       2/2  done")
    selection = "'task1_2 or task2_3 or task3_1 or task4_1 or task5_1'"
    check("make test", done, ok, "01_data: 2/2", "02_torch_pretrained: 2/2", "03_torch_scratch: 3/3",
          "04_keras_scratch: 2/2", "05_analysis: 3/3", args=f'PYTEST_ARGS="-m {selection}"')  # fmt: skip
    # real CIFAR-10 cannot be downloaded here: `data download` finds the copy's data folder,
    # a generated one large enough for `data info`'s default validation split of 5000
    run(done, ".venv/bin/alexnet-course data synth data --n-train 6000")
    check(".venv/bin/alexnet-course data download", done, ok, "CIFAR-10 is in data/cifar-10-batches-py")
    check(".venv/bin/alexnet-course data info", done, ok, "lesson 01's channel_stats, lessons")
    out = check(".venv/bin/alexnet-course compare --impl lessons --profile smoke", done, ok,
                "report: runs/compare/report.md", args="--arms torch-scratch --epochs 1")  # fmt: skip
    report = (done / "runs" / "compare" / "report.md").read_text()
    assert "lesson 05's analysis, lessons" in report and "percentage points" in report
    page = _serve(stubs)
    assert "Start here" in page and "make test LESSON" in re.sub(r"<[^>]+>", "", page)
    checked.add("make serve")
    budget = ".venv/bin/alexnet-course compare --impl lessons --budget-minutes 60"
    checked.add(budget)  # on the finished copy it would train for an hour: its preflight ran above
    assert named == checked, ("named in the README but not run here", named - checked,
                              "run here but not in the README", checked - named)
