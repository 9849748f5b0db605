"""Gradescope's autograder bundle: ``alexnet-course autograder LESSON... --out
autograder.zip [--hidden DIR]``.

The bundle holds ``setup.sh`` (installs the course with pinned, CPU-only dependencies),
``run_autograder`` (grades ``/autograder/submission`` with the course's trusted grader, the
same code as ``alexnet-course grade``: :mod:`alexnet_course.grading.autograder`), the course
library, the lessons' stubs and pristine tests, and the hidden tests if given. No solutions.
``AUTOGRADER_ROOT`` (default ``/autograder``) moves every path the bundle uses, so the
bundle can be tested outside a container.
"""

from __future__ import annotations

import json
import secrets
import shutil
import stat
import tempfile
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alexnet_course.grading.grader import GradeError, collect, read_lessons

BASE_IMAGE = "gradescope/autograder-base:ubuntu-22.04"
PINNED = ("torch", "torchvision", "tensorflow", "keras", "numpy", "matplotlib", "pillow",
          "pytest", "pytest-benchmark", "tqdm")  # fmt: skip
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
COURSE_FILES = ("pyproject.toml", "README.md")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image.
# Written for {base_image} (Python >= 3.10); AUTOGRADER_ROOT moves /autograder.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
SRC="$ROOT/source"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip bubblewrap
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --upgrade pip
# the CPU build of torch: Gradescope's machines have no GPU, and it is 10x smaller
"$ROOT/venv/bin/python" -m pip install --quiet --index-url {cpu_index} \\
    --extra-index-url https://pypi.org/simple -c "$SRC/constraints.txt" torch torchvision
"$ROOT/venv/bin/python" -m pip install --quiet -c "$SRC/constraints.txt" "$SRC/course"
"$ROOT/venv/bin/python" -c "import alexnet_course, torch; print('ready: torch', torch.__version__)"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grade /autograder/submission with the
# course's trusted grader and write /autograder/results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${ALEXNET_COURSE_PYTHON:-$ROOT/venv/bin/python}"
exec "$PY" -m alexnet_course.grading.autograder run --root "$ROOT"
"""


def constraints() -> str:
    lines = []
    for name in PINNED:
        try:
            v = version(name).split("+")[0]  # 2.14.1+cu128 -> 2.14.1 (the CPU build's number)
        except PackageNotFoundError:
            continue
        lines.append(f"{name}=={v}")
    return "\n".join(lines) + "\n"


def build_autograder(course: Path, lessons: list[str], out: Path, hidden: Path | None = None,
                     timeout: float = 120.0, lesson_budget: float = 1200.0,
                     check: bool = True, echo=print) -> list[str]:  # fmt: skip
    """Write Gradescope's autograder zip for ``lessons`` to ``out``; returns its file names.

    With ``check`` (and the course's solutions at hand), the reference solution is graded
    first with the bundle's tests, the hidden ones included, in this machine's sandbox: a
    test that fails on it (a hidden test the sandbox cannot serve, say) stops the build.
    """
    specs = read_lessons(course, lessons or None, hidden)
    if out.suffix != ".zip":
        raise GradeError(f"--out {out}: the bundle is a .zip file")
    if check and (course / "solutions").is_dir():
        from alexnet_course.grading.grader import grade

        with tempfile.TemporaryDirectory(prefix="autograder-check-") as tmp:
            ref = Path(tmp) / "reference"
            for spec in specs:
                (ref / "lessons" / spec.name).mkdir(parents=True)
                for f in spec.learner_files:
                    src = course / "solutions" / spec.name / f
                    if src.is_file():
                        shutil.copyfile(src, ref / "lessons" / spec.name / f)
            # the calibration inside grade() stops on any test that fails on the reference
            grade([ref], Path(tmp) / "out", course=course, lessons=[s.name for s in specs],
                  hidden=hidden, timeout=timeout, echo=echo)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        root = Path(tmp)
        with tempfile.TemporaryDirectory(prefix="collect-") as ctmp:  # the tests must collect
            for spec in specs:
                collect(spec, Path(ctmp) / spec.name)
        dest = root / "course"
        dest.mkdir()
        for name in COURSE_FILES:
            shutil.copy2(course / name, dest / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(course / "alexnet_course", dest / "alexnet_course", ignore=ignore)
        for spec in specs:  # the stubs (they name the learner files) and the pristine tests
            src = course / "lessons" / spec.name
            (dest / "lessons" / spec.name).mkdir(parents=True)
            for f in sorted(src.glob("*.py")):
                shutil.copy2(f, dest / "lessons" / spec.name / f.name)
            if hidden is not None and (hidden / spec.name).is_dir():
                (root / "hidden" / spec.name).mkdir(parents=True)
                for f in sorted((hidden / spec.name).glob("test_*.py")):
                    shutil.copy2(f, root / "hidden" / spec.name / f.name)
        (root / "constraints.txt").write_text(constraints())
        (root / "autograder.json").write_text(json.dumps(
            {"lessons": [s.name for s in specs], "timeout": timeout,
             "lesson_budget": lesson_budget, "hidden": hidden is not None,
             # one seed for the drawn fixtures, chosen now: every submission gets the same
             # draws, and no learner can read them (the file is made root's alone)
             "draw_seed": secrets.randbelow(2**31)}, indent=2))  # fmt: skip
        (root / "setup.sh").write_text(SETUP_SH.format(base_image=BASE_IMAGE,
                                                       cpu_index=CPU_TORCH_INDEX))  # fmt: skip
        (root / "run_autograder").write_text(RUN_AUTOGRADER)
        names = []
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out.with_suffix(".zip.tmp"), "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    rel = str(p.relative_to(root))
                    info = zipfile.ZipInfo(rel, date_time=(2026, 1, 1, 0, 0, 0))
                    mode = 0o755 if p.name in ("setup.sh", "run_autograder") else 0o644
                    info.external_attr = (stat.S_IFREG | mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, p.read_bytes())
                    names.append(rel)
        out.with_suffix(".zip.tmp").replace(out)
    leaks = [n for n in names if n.startswith("solutions/") or "/solutions/" in n]
    if leaks:
        out.unlink()
        raise GradeError(f"bundle aborted: solution files {leaks[:3]}")
    return names
