"""The course on the platforms instructors already use.

* ``alexnet-course autograder LESSON... --out autograder.zip [--hidden DIR]`` builds
  Gradescope's autograder bundle: ``setup.sh`` (installs the course with pinned, CPU-only
  dependencies), ``run_autograder`` (grades ``/autograder/submission`` with the course's
  trusted grader, the same code as ``alexnet-course grade``, and writes
  ``/autograder/results/results.json``), the course library, the lessons' stubs and pristine
  tests, and the hidden tests if given. No solutions.
* ``alexnet-course release --classroom`` adds a GitHub Classroom workflow to the learner's
  copy: one ``autograding-command-grader`` step per task, with that task's points.

``AUTOGRADER_ROOT`` (default ``/autograder``) moves every path the bundle uses, so the
bundle can be tested outside a container; ``ALEXNET_COURSE_PYTHON`` names the interpreter
``run_autograder`` uses (default: the virtual environment ``setup.sh`` made).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.grading.grader import GradeError, collect, find_lessons_root, read_lessons, unpack

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


# ---------------------------------------------------------------- building the bundle
def _constraints() -> str:
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
        (root / "constraints.txt").write_text(_constraints())
        (root / "autograder.json").write_text(json.dumps(
            {"lessons": [s.name for s in specs], "timeout": timeout,
             "lesson_budget": lesson_budget, "hidden": hidden is not None}, indent=2))  # fmt: skip
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


# ---------------------------------------------------------------- GitHub Classroom
WORKFLOW_HEAD = """# GitHub Classroom autograding for alexnet-course, written by `alexnet-course release
# --classroom`. It runs in the learner's own repository: feedback, not proof. For marks that
# count, grade with Gradescope or `alexnet-course grade`.
name: Autograding Tests
'on':
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v5
      - name: Set up Python
        uses: actions/setup-python@v6
        with:
          python-version: '3.11'
      - name: Cache the virtual environment
        id: venv-cache
        uses: actions/cache@v5
        with:
          path: .venv
          key: venv-${{{{ runner.os }}}}-py311-${{{{ hashFiles('pyproject.toml', '.github/constraints.txt') }}}}
      - name: Install the course (CPU build of torch)
        if: steps.venv-cache.outputs.cache-hit != 'true'
        run: |
          python -m venv .venv
          .venv/bin/python -m pip install --quiet --upgrade pip
          .venv/bin/python -m pip install --quiet --index-url {cpu_index} --extra-index-url https://pypi.org/simple -c .github/constraints.txt torch torchvision
          .venv/bin/python -m pip install --quiet -c .github/constraints.txt -e .
      - name: Link the course into the cached environment
        if: steps.venv-cache.outputs.cache-hit == 'true'
        run: .venv/bin/python -m pip install --quiet --no-deps -e .
"""


def task_points(course: Path, lessons: list[str] | None = None) -> list[tuple[str, str, float]]:
    """(lesson, task, points) for every task, in order, from the trusted collection; GPU-only
    tests are left out (hosted runners have no GPU)."""
    from alexnet_course.course import task_key

    out = []
    with tempfile.TemporaryDirectory(prefix="collect-") as tmp:
        for spec in read_lessons(course, lessons, None):
            per: dict[str, float] = {}
            for t in collect(spec, Path(tmp) / spec.name):
                if not t.get("gpu_only") and not t.get("gpu"):
                    per[t["task"]] = per.get(t["task"], 0.0) + float(t["points"])
            out += [(spec.name, task, per[task]) for task in sorted(per, key=task_key)]
    return out


def classroom_workflow(tasks: list[tuple[str, str, float]], timeout_minutes: int = 10) -> str:
    """The workflow text: one autograding-command-grader step per task, then the reporter."""
    text = WORKFLOW_HEAD.format(cpu_index=CPU_TORCH_INDEX)
    ids = []
    for lesson, task, points in tasks:
        sid = "task-" + task.replace(".", "-")
        ids.append(sid)
        text += f"""      - name: {lesson} task {task}
        id: {sid}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: {lesson} task {task}
          setup-command: ''
          command: .venv/bin/python -m pytest lessons/{lesson} -m task{task.replace(".", "_")} -q -p no:cacheprovider
          timeout: {timeout_minutes}
          max-score: {points:g}
"""
    text += """      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
"""
    for sid in ids:
        text += f"          {sid.upper()}_RESULTS: \"${{{{steps.{sid}.outputs.result}}}}\"\n"
    text += f"""        with:
          runners: {",".join(ids)}
"""
    return text


def add_classroom(course: Path, release_dir: Path) -> Path:
    """Write ``.github/workflows/classroom.yml`` (and the pinned constraints) into a release."""
    wf = release_dir / ".github" / "workflows" / "classroom.yml"
    wf.parent.mkdir(parents=True, exist_ok=True)
    wf.write_text(classroom_workflow(task_points(course)))
    (release_dir / ".github" / "constraints.txt").write_text(_constraints())
    return wf


# ---------------------------------------------------------------- inside Gradescope
def stage_submission(submission: Path, dest: Path, lessons: dict[str, list[str]]) -> Path:
    """What to grade in a Gradescope submission folder: the folder itself when it holds
    ``lessons/NN_name/`` (or ``NN_name/``), else a zip of such a folder, else the loose
    learner files uploaded one by one, laid out under ``dest`` by file name."""
    try:
        find_lessons_root(submission)
        return find_lessons_root(unpack(submission, dest / "folder")).parent  # a private copy
    except GradeError:
        pass
    for i, z in enumerate(sorted(submission.rglob("*.zip"))):
        if z.is_file() and not z.is_symlink():
            try:
                return find_lessons_root(unpack(z, dest / f"zip{i}")).parent
            except (GradeError, OSError):
                continue
    staged = dest / "loose" / "lessons"
    wanted = {f: lesson for lesson, files in lessons.items() for f in files}
    found = 0
    for p in sorted(submission.rglob("*.py")):
        lesson = wanted.get(p.name)
        if lesson and p.is_file() and not p.is_symlink():
            (staged / lesson).mkdir(parents=True, exist_ok=True)
            if not (staged / lesson / p.name).exists():
                shutil.copyfile(p, staged / lesson / p.name)
                found += 1
    if not found:
        raise GradeError("the submission holds no lessons/NN_name/ folder, no zip of one and "
                         f"none of the learner files ({', '.join(sorted(wanted))})")  # fmt: skip
    return staged.parent


def _private(paths: list[Path]) -> None:
    """Learner code may run as a pool uid in this container: what it must not read (the
    hidden tests, the results folder, an installed copy of the course library with more
    than the worker needs) is made readable by root alone. Only paths of the bundle's own
    installation are touched."""
    if os.geteuid() != 0:
        return
    for p in paths:
        if p.exists() and not p.is_symlink():
            os.chmod(p, 0o700)


def run(root: Path, echo=print) -> dict:
    """Grade ``root/submission`` into ``root/results/results.json`` (Gradescope's layout),
    in bubblewrap where it starts, else as a pool uid (Gradescope's container runs as root
    without user namespaces)."""
    import alexnet_course
    from alexnet_course.grading.grader import grade

    t0 = time.time()
    src = root / "source"
    conf = json.loads((src / "autograder.json").read_text())
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    package = Path(alexnet_course.__file__).resolve().parent
    installed = [package] if package.is_relative_to(root.resolve()) else []
    _private([src / "hidden", results_dir, *installed])
    notes = []
    try:
        course = src / "course"
        specs = read_lessons(course, conf["lessons"], None)
        with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
            staged = stage_submission(root / "submission", Path(tmp) / "in",
                                      {s.name: s.learner_files for s in specs})  # fmt: skip
            hidden = src / "hidden" if (src / "hidden").is_dir() else None
            res = grade([staged], Path(tmp) / "out", course=course, lessons=conf["lessons"],
                        hidden=hidden, timeout=float(conf.get("timeout", 120)), jobs=1,
                        sandbox_tier=os.environ.get("ALEXNET_COURSE_SANDBOX", "auto"),
                        lesson_budget=conf.get("lesson_budget"), calibrate=False,
                        echo=echo)[0]  # fmt: skip
            data = json.loads((Path(tmp) / "out" / res.name / "results.json").read_text())
            notes.append(f"graded in the {res.sandbox} sandbox tier")
    except (CourseError, OSError) as e:
        data = {"score": 0.0, "tests": [], "output": f"could not grade this submission: {e}"}
    # Gradescope's format has no top-level maximum: keep it under extra_data
    if "max_score" in data:
        data.setdefault("extra_data", {})["max_score"] = data.pop("max_score")
    data["execution_time"] = round(time.time() - t0, 2)
    data.setdefault("stdout_visibility", "hidden")
    if notes:
        data["output"] = "\n".join([data.get("output", ""), *notes]).strip()
    tmp_file = results_dir / "results.json.tmp"
    tmp_file.write_text(json.dumps(data, indent=2))
    tmp_file.replace(results_dir / "results.json")
    return data


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m alexnet_course.grading.autograder")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="grade a Gradescope submission (run_autograder calls this)")
    r.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    args = p.parse_args(argv)
    data = run(args.root)
    top = data.get("extra_data", {}).get("max_score", 0)
    print(f"score {data.get('score', 0):g}/{top:g}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
