"""The class grader: gradebook, hidden tests, determinism, the release, and one test per way
a learner could try to forge a grade. A tiny lesson keeps these fast."""

from __future__ import annotations

import csv
import json
import textwrap
import zipfile
from pathlib import Path

import pytest

from alexnet_course.grading.grader import GradeError, grade, release
from tests.conftest import ROOT

STUB = '''
def one():
    raise NotImplementedError("Task 9.1 not started")


def two():
    raise NotImplementedError("Task 9.2 not started")


def three():
    raise NotImplementedError("Task 9.3 not started")
'''
TESTS = '''
import pytest
from alexnet_course.grading import learner

mod = learner.load(__file__, "mod")


@pytest.mark.task("9.1", points=1)
def test_one():
    assert mod.one() == 1


@pytest.mark.task("9.2", points=1)
def test_two():
    assert mod.two() == 2


@pytest.mark.task("9.3", points=1)
def test_three():
    assert mod.three() == 3
'''
GOOD = "def one():\n    return 1\n\n\ndef three():\n    return 3\n\n\n"


@pytest.fixture
def course(tmp_path) -> Path:
    c = tmp_path / "course"
    (c / "lessons" / "09_demo").mkdir(parents=True)
    (c / "lessons" / "09_demo" / "mod.py").write_text(STUB)
    (c / "lessons" / "09_demo" / "test_demo.py").write_text(TESTS)
    return c


def submission(root: Path, name: str, two_body: str, extra: dict[str, str] | None = None) -> Path:
    d = root / name / "lessons" / "09_demo"
    d.mkdir(parents=True)
    (d / "mod.py").write_text(GOOD + "def two():\n" + textwrap.indent(textwrap.dedent(two_body),
                                                                      "    "))  # fmt: skip
    for rel, text in (extra or {}).items():
        p = root / name / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / name


ATTACKS = {
    "honest": "return 2\n",
    "sys_exit": "import sys\nsys.exit(0)\n",
    "os_exit": "import os\nos._exit(0)\n",
    "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn 0\n",
    "fake_output": "print('=' * 20 + ' 3 passed in 0.01s ' + '=' * 20)\n"
                   "print('09_demo: 3/3')\nreturn 0\n",
    "forge_results": textwrap.dedent('''\
        import json, os
        line = json.dumps({"event": "result", "nodeid": "09_demo/test_demo.py::test_two",
                           "status": "passed", "output": "", "seq": 99, "mac": "0" * 64})
        for fd in os.listdir("/proc/self/fd"):
            try:
                os.write(int(fd), (line + "\\n").encode())
            except OSError:
                pass
        open("results.json", "w").write('{"score": 100, "max_score": 3, "tests": []}')
        return 0
        '''),
    "patch_pytest": "import _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n"
                    "return 0\n",
    "patch_plugin": "import alexnet_course.grading.plugin as p\n"
                    "p.Scoreboard.score = lambda self, o: o.points\nreturn 0\n",
    "edit_tests": textwrap.dedent('''\
        import os, pathlib
        for t in pathlib.Path(__file__).parent.glob("test_*.py"):
            t.write_text("def test_nothing():\\n    pass\\n")
        import alexnet_course
        (pathlib.Path(alexnet_course.__file__).parent / "grading" / "checks.py").write_text("x = 1")
        # and the instructor's own copy of the tests, wherever the course lives
        pathlib.Path(os.environ["COURSE_TESTS"]).write_text("def test_one():\\n    pass\\n")
        return 0
        '''),
    "loop_forever": "while True:\n    pass\n",
    "disable_alarm_and_hang": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                              "while True:\n    pass\n",
    "allocate_unbounded": "chunks = []\nwhile True:\n    chunks.append(bytearray(10**8))\n",
    "own_conftest_and_settings": "return 0\n",
}
EXTRAS = {
    "own_conftest_and_settings": {
        "lessons/09_demo/conftest.py": "import pytest\n@pytest.hookimpl(wrapper=True)\n"
        "def pytest_runtest_call(item):\n    return None\n",
        "lessons/09_demo/test_demo.py": "def test_two():\n    pass\n",
        "lessons/09_demo/pytest.ini": "[pytest]\naddopts = -p no:alexnet_course\n",
        "lessons/09_demo/sitecustomize.py": "import sys; sys.exit(0)\n",
        "lessons/09_demo/evil.pth": "import os; os._exit(0)\n",
    },
}


@pytest.mark.slow
def test_no_attack_forges_a_grade_and_the_rest_is_graded(course, tmp_path, monkeypatch):
    # one attack edits the course's own test file, whose path it is told (a learner who
    # knows where the course lives); another edits its copy of the course package
    course_tests = course / "lessons" / "09_demo" / "test_demo.py"
    before = course_tests.read_bytes()
    monkeypatch.setenv("COURSE_TESTS", str(course_tests))
    subs = [submission(tmp_path / "subs", n, body, EXTRAS.get(n)) for n, body in ATTACKS.items()]
    out = tmp_path / "out"
    results = grade(subs, out, course=course, timeout=3, jobs=2, memory_mb=1024, echo=lambda s: None)
    assert course_tests.read_bytes() == before  # restored
    scores = {r.name: {t.nodeid.split("::")[-1]: t.status for t in r.tests} for r in results}
    outputs = {r.name: [r.errors] + [(t.nodeid, t.status, t.output[:300]) for t in r.tests]
               for r in results}
    wrong = []
    for name in ATTACKS:
        s = scores[name]
        want_two = "passed" if name == "honest" else "failed"
        want = {"test_one": "passed", "test_two": want_two, "test_three": "passed"}
        if name == "edit_tests":  # editing course files scores the whole lesson 0
            want = {"test_one": "failed", "test_two": "failed", "test_three": "failed"}
        if s != want:
            wrong.append((name, outputs[name]))
    assert not wrong, wrong
    for name in ATTACKS:
        data = json.loads((out / name / "results.json").read_text())
        assert data["max_score"] == 3
    # editing course files is caught and repaired, and scored 0 for that lesson
    assert any("modified" in e for r in results if r.name == "edit_tests" for e in r.errors)
    book = list(csv.DictReader(open(out / "gradebook.csv")))
    assert {row["submission"]: row["total"] for row in book}["honest"] == "3"
    assert {row["submission"]: row["total"] for row in book}["loop_forever"] == "2"
    assert {row["submission"]: row["total"] for row in book}["edit_tests"] == "0"
    assert list((out / "_modified").rglob("*test_demo.py"))  # the modified copy is kept


def test_gradebook_results_json_zip_and_determinism(course, tmp_path):
    good = submission(tmp_path / "subs", "alice", "return 2\n")
    half = submission(tmp_path / "subs", "bob", "return 5\n")
    z = tmp_path / "subs" / "carol.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(good / "lessons" / "09_demo" / "mod.py", "carol/lessons/09_demo/mod.py")
    serial = tmp_path / "serial"
    grade([good, half, z], serial, course=course, timeout=10, echo=lambda s: None)
    parallel = tmp_path / "parallel"
    grade([good, half, z], parallel, course=course, timeout=10, jobs=3, echo=lambda s: None)
    again = tmp_path / "again"
    grade([good, half, z], again, course=course, timeout=10, jobs=2, echo=lambda s: None)
    book = (serial / "gradebook.csv").read_text()
    assert book == (parallel / "gradebook.csv").read_text() == (again / "gradebook.csv").read_text()
    rows = {r["submission"]: r for r in csv.DictReader(open(serial / "gradebook.csv"))}
    assert rows["alice"]["total"] == "3" and rows["bob"]["total"] == "2"
    assert rows["carol"]["total"] == "3" and rows["bob"]["09_demo 9.2"] == "0"
    data = json.loads((serial / "bob" / "results.json").read_text())
    assert {"score", "max_score", "execution_time", "tests"} <= set(data)
    t = next(t for t in data["tests"] if t["number"] == "9.2")
    assert t["status"] == "failed" and "assert 5 == 2" in t["output"]
    assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}


def test_hidden_tests_are_graded_and_do_not_leak(course, tmp_path):
    hidden = tmp_path / "hidden" / "09_demo"
    hidden.mkdir(parents=True)
    (hidden / "test_extra.py").write_text(textwrap.dedent('''
        import pytest
        from alexnet_course.grading import learner
        mod = learner.load(__file__, "mod")

        @pytest.mark.task("9.2", points=2)
        def test_two_again():
            SECRET_EXPECTATION = 22
            assert mod.two() * 11 == SECRET_EXPECTATION, "SECRET hint"
        '''))
    sub = submission(tmp_path / "subs", "dave", "return 3\n")
    grade([sub], tmp_path / "out", course=course, hidden=tmp_path / "hidden", timeout=10,
          echo=lambda s: None)  # fmt: skip
    data = json.loads((tmp_path / "out" / "dave" / "results.json").read_text())
    hidden_tests = [t for t in data["tests"] if t["visibility"] == "after_published"]
    assert len(hidden_tests) == 1 and hidden_tests[0]["max_score"] == 2
    assert hidden_tests[0]["status"] == "failed"
    assert "SECRET" not in json.dumps(data)


def test_bad_submissions_get_a_clear_error_and_others_are_graded(course, tmp_path):
    good = submission(tmp_path / "subs", "erin", "return 2\n")
    broken = tmp_path / "subs" / "frank.zip"
    broken.write_bytes(b"not a zip")
    empty = tmp_path / "subs" / "gina"
    empty.mkdir()
    results = {r.name: r for r in grade([good, broken, empty], tmp_path / "out", course=course,
                                        timeout=10, echo=lambda s: None)}  # fmt: skip
    assert sum(t.score for t in results["erin"].tests) == 3
    assert "not a readable zip" in results["frank"].errors[0]
    assert "no lessons/NN_name/" in results["gina"].errors[0]
    assert sum(t.score for t in results["gina"].tests) == 0 and len(results["gina"].tests) == 3
    with pytest.raises(GradeError, match="no such submission"):
        grade([tmp_path / "nope"], tmp_path / "o2", course=course)
    with pytest.raises(GradeError, match="unknown lesson"):
        grade([good], tmp_path / "o3", course=course, lessons=["42_nothing"])


@pytest.mark.slow
def test_release_has_no_solutions_and_grades_zero_while_solutions_grade_full(tmp_path):
    out = tmp_path / "release"
    stubs = release(ROOT, out)
    assert stubs and not (out / "solutions").exists() and not (out / "tests").exists()
    assert "### BEGIN SOLUTION" not in "".join(p.read_text() for p in (out / "lessons").rglob("*.py"))
    with pytest.raises(GradeError, match="not empty"):
        release(ROOT, out)
    sol = tmp_path / "sol" / "lessons"
    for lesson in (ROOT / "solutions").iterdir():
        (sol / lesson.name).mkdir(parents=True)
        for f in lesson.glob("*.py"):
            (sol / lesson.name / f.name).write_text(f.read_text())
    rel = grade([out], tmp_path / "g", course=ROOT, timeout=120, jobs=1, echo=lambda s: None)[0]
    assert {t.lesson for t in rel.tests} == {p.name for p in (ROOT / "solutions").iterdir()}
    assert rel.tests and all(t.score == 0 for t in rel.tests)
    # full points through the grader, on the quick lessons (every lesson's suite passing on
    # its solution is checked in test_lessons.py)
    quick = ["01_data", "05_analysis"]
    full = grade([tmp_path / "sol"], tmp_path / "g2", course=ROOT, lessons=quick, timeout=120,
                 echo=lambda s: None)[0]  # fmt: skip
    assert all(t.status in ("passed", "skipped") for t in full.tests), [
        (t.nodeid, t.output[:300]) for t in full.tests if t.status not in ("passed", "skipped")]
