"""The class grader: gradebook, hidden tests, the release, and the attacks a cheating learner
tries, written from what the learner release ships (the grader's source and the visible
tests). A tiny lesson keeps these fast; the real lessons are graded in test_lessons.py and
in the class-size run."""

from __future__ import annotations

import csv
import hashlib
import json
import sysconfig
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from alexnet_course.grading import sandbox
from alexnet_course.grading.grader import GradeError, grade, release
from tests.conftest import ROOT

STUB = '''
def one():
    raise NotImplementedError("Task 9.1 not started")


def two(x):
    raise NotImplementedError("Task 9.2 not started")


def three(xs):
    raise NotImplementedError("Task 9.3 not started")


def four():
    raise NotImplementedError("Task 9.4 not started")
'''
SOLUTION = '''
def one():
    return 1


def two(x):
    return x * x + 1


def three(xs):
    return sorted(xs)


def four():
    return 4
'''
TESTS = '''
import pytest
from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect_equal
from alexnet_course.grading.remote import observe

mod = learner.load(__file__, "mod")


def _one():
    return mod.one()


def _two(x):
    return mod.two(x)


def _three(xs):
    return mod.three(xs)


def _four():
    return mod.four()


@pytest.mark.task("9.1", points=1)
def test_one():
    expect_equal(observe(_one), 1, "one()")


@pytest.mark.task("9.2", points=1)
def test_two():
    for x in (3, 7, 11):  # the inputs come from the checking half
        expect_equal(observe(_two, x), x * x + 1, f"two({x})", hint="x squared plus one")


@pytest.mark.task("9.3", points=1)
def test_three():
    xs = [5, 2, 9, 1]
    expect_equal(observe(_three, xs), [1, 2, 5, 9], "three(xs)")


@pytest.mark.gpu
@pytest.mark.task("9.4", points=2)
def test_four_on_a_gpu():
    expect_equal(observe(_four), 4, "four()")
'''
HONEST_TWO = "return x * x + 1\n"
GOOD = ("def one():\n    return 1\n\n\ndef three(xs):\n    return sorted(xs)\n\n\n"
        "def four():\n    return 4\n\n\n")
HIDDEN = '''
import pytest
from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect_equal
from alexnet_course.grading.remote import observe

mod = learner.load(__file__, "mod")
SECRET_EXPECTATION = 13 * 13 + 1


def _two(x):
    print("SECRET printed by the hidden worker")
    return mod.two(x)


@pytest.mark.task("9.2", points=2)
def test_two_again():
    expect_equal(observe(_two, 13), SECRET_EXPECTATION, "two(13)", hint="SECRET hint")
'''
NO_SANDBOX = False
try:
    sandbox.check_sandbox()
except sandbox.SandboxError as e:
    NO_SANDBOX = str(e)
needs_bwrap = pytest.mark.skipif(bool(NO_SANDBOX), reason=f"no sandbox here: {NO_SANDBOX}")


@pytest.fixture
def course(tmp_path) -> Path:
    c = tmp_path / "course"
    (c / "lessons" / "09_demo").mkdir(parents=True)
    (c / "lessons" / "09_demo" / "mod.py").write_text(STUB)
    (c / "lessons" / "09_demo" / "test_demo.py").write_text(TESTS)
    (c / "solutions" / "09_demo").mkdir(parents=True)
    (c / "solutions" / "09_demo" / "mod.py").write_text(SOLUTION)
    return c


def submission(root: Path, name: str, two_body: str, extra: dict[str, str] | None = None,
               top: str = "") -> Path:  # fmt: skip
    """A learner's folder: one() and three() right, two() with ``two_body``, ``top`` at the
    top of the module (code that runs at import), and extra files."""
    d = root / name / "lessons" / "09_demo"
    d.mkdir(parents=True)
    body = textwrap.indent(textwrap.dedent(two_body), "    ")
    (d / "mod.py").write_text(textwrap.dedent(top) + "\n" + GOOD + "def two(x):\n" + body)
    for rel, text in (extra or {}).items():
        p = root / name / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / name


def _attacks(course: Path, subs: Path, out: Path) -> dict[str, dict]:
    """Each attack: the body of two(), code at import, extra files. What each may know is
    what a learner can know: the course's and the other submissions' paths (a shared lab
    machine, a ``ps`` listing), the grader's source."""
    sol = course / "solutions" / "09_demo" / "mod.py"
    honest = subs / "honest" / "lessons" / "09_demo" / "mod.py"
    site = sysconfig.get_paths()["purelib"]
    return {
        # 1. patching the checks, pytest and builtins at import time
        "patch_at_import": {"top": '''
            import builtins, pytest
            import alexnet_course.grading.checks as checks
            checks._fail = lambda *a, **k: None
            checks.expect_equal = lambda *a, **k: None
            pytest.fail = lambda *a, **k: None
            builtins.isinstance = lambda *a: True
            ''', "two": "return 0\n"},
        # 2. rewriting the tests themselves (no-op bodies, 1000 points) while being imported
        "rewrite_tests": {"top": '''
            import pathlib, sys
            for t in pathlib.Path(__file__).parent.glob("test_*.py"):
                t.write_text("import pytest\\n@pytest.mark.task('9.2', points=1000)\\n"
                             "def test_two():\\n    pass\\n")
            for m in list(sys.modules.values()):
                if getattr(m, "__name__", "").startswith("_graded_"):
                    for k in dir(m):
                        if k.startswith("test_"):
                            setattr(m, k, lambda *a, **k: None)
            ''', "two": "return 0\n"},
        # 3. identity checks: swapping a checker's code, settrace on the checker's frame
        "swap_code_and_settrace": {"top": '''
            import sys
            import alexnet_course.grading.checks as checks
            checks.expect_equal.__code__ = (lambda *a, **k: None).__code__
            def tracer(frame, event, arg):
                if frame.f_code.co_name == "expect":
                    frame.f_locals["ok"] = True
                return tracer
            sys.settrace(tracer)
            ''', "two": "return 0\n"},
        # 4. forging on the channel: a "passed" frame on every descriptor, outcome and
        #    results files wherever they might be read
        "forge_channel": {"two": '''
            import json, os, struct, glob
            from alexnet_course.grading import remote
            verdict = {"nodeid": "09_demo/test_demo.py::test_two", "status": "passed",
                       "score": 1000, "max_score": 1000}
            forged = remote.pack({"ok": True, "value": verdict})
            for fd in range(3, 64):
                try:
                    os.write(fd, forged)
                except OSError:
                    pass
            row = [{"nodeid": "09_demo/test_demo.py::test_two", "status": "passed", "output": ""},
                   {"nodeid": "09_demo/test_demo.py::test_four_on_a_gpu", "status": "passed",
                    "output": ""}]
            for d in ["..", "../..", "../../..", "/tmp"] + glob.glob("/tmp/*/*"):
                try:
                    open(os.path.join(d, "outcomes.json"), "w").write(json.dumps(row))
                except OSError:
                    pass
            return 0
            '''},
        # 5. objects that lie
        "lying_object": {"two": '''
            class Anything(int):
                def __eq__(self, other):
                    return True
                __hash__ = int.__hash__
                def __repr__(self):
                    return repr(x * x + 1)
            return Anything(0)
            '''},
        "lying_array": {"two": '''
            class Fake:
                def __eq__(self, other):
                    return True
                def __array__(self, *a, **k):
                    import numpy
                    return numpy.asarray(x * x + 1)
            return Fake()
            '''},
        # 6. answers from the instructor's solutions, a classmate, the course library
        "read_solutions": {"two": f'''
            ns = {{}}
            exec(open({str(sol)!r}).read(), ns)
            return ns["two"](x)
            '''},
        "copy_classmate": {"two": f'''
            ns = {{}}
            exec(open({str(honest)!r}).read(), ns)
            return ns["two"](x)
            '''},
        "library_answers": {"two": '''
            import alexnet_course.data.cifar10  # the library's answers to lesson 01
            import alexnet_course.grading.grader  # and the grader
            return x * x + 1
            '''},
        # 7. outliving the test process
        "detached_rewriter": {"two": f'''
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    import ctypes
                    ctypes.CDLL(None).prctl(15, b"alexnetmarker", 0, 0, 0)  # its name
                    for _ in range(40):
                        time.sleep(0.25)
                        try:
                            open({str(out / "gradebook.csv")!r}, "w").write("forged")
                            open({str(out / "detached_rewriter" / "results.json")!r}, "w").write("forged")
                        except OSError:
                            pass
                    os._exit(0)
                os._exit(0)
            return 0
            '''},
        "pth_into_venv": {"two": f'''
            for name in ("zz-alexnet-attack.pth",):
                try:
                    open({site!r} + "/" + name, "w").write("import os; os._exit(0)\\n")
                except OSError:
                    pass
            return 0
            '''},
        "trash_other_temp": {"two": '''
            import glob, os
            for p in glob.glob("/tmp/**/mod.py", recursive=True) + glob.glob("/tmp/*/*/*/*/mod.py"):
                try:
                    open(p, "w").write("def one():\\n    return 0\\n")
                except OSError:
                    pass
            return 0
            '''},
        "kill_everything": {"two": '''
            import os, signal
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            os.kill(os.getppid(), signal.SIGKILL)
            return 0
            '''},
        "sys_exit": {"two": "import sys\nsys.exit(0)\n"},
        "os_exit": {"two": "import os\nos._exit(0)\n"},
        "loop_forever": {"two": "while True:\n    pass\n"},
        "disable_alarm_and_hang": {"two": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                          "while True:\n    pass\n"},
        "allocate_unbounded": {"two": "chunks = []\nwhile True:\n    chunks.append(bytearray(10**8))\n"},
        "fake_output": {"two": "print('=' * 20 + ' 3 passed in 0.01s ' + '=' * 20)\n"
                               "print('09_demo: 4/4')\nreturn 0\n"},
        # 8. hidden tests leaking through a visible test's failure message
        "leak_hidden": {"two": '''
            import glob
            found = []
            places = ["/submission/*/", "/submission/*/*/", "../*/*/", "../../*/*/", "/tmp/**/",
                      "/course/**/", "/*/"]
            for place in places:
                for p in glob.glob(place + "test_hidden_*", recursive=True)[:5]:
                    found.append(open(p).read())
            raise ValueError("LEAK " + " ".join(found))
            '''},
        # 10. a broken collection: the learner's own conftest, settings, a syntax error
        "own_conftest_and_settings": {"two": "return 0\n", "extra": {
            "lessons/09_demo/conftest.py": "import pytest\n@pytest.hookimpl(wrapper=True)\n"
            "def pytest_runtest_call(item):\n    return None\n",
            "lessons/09_demo/test_demo.py": "def test_two():\n    pass\n",
            "lessons/09_demo/pytest.ini": "[pytest]\naddopts = -p no:alexnet_course\n",
            "lessons/09_demo/sitecustomize.py": "import sys; sys.exit(0)\n",
            "lessons/09_demo/evil.pth": "import os; os._exit(0)\n",
        }},
    }


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts:
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def _venv_digest() -> str:
    """Every file name in site-packages, and the content of every .pth file there."""
    site = Path(sysconfig.get_paths()["purelib"])
    h = hashlib.sha256()
    for p in sorted(site.iterdir()):
        h.update(p.name.encode())
        if p.suffix == ".pth":
            h.update(p.read_bytes())
    return h.hexdigest()


def _marked_processes() -> list[int]:
    """Processes the detached_rewriter attack started (it names them)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "alexnetmarker":
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@needs_bwrap
@pytest.mark.slow
def test_no_attack_forges_a_grade_and_the_rest_is_graded(course, tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    attacks = _attacks(course, subs, out)
    paths = [submission(subs, "honest", HONEST_TWO)]
    stub = subs / "stub" / "lessons" / "09_demo"
    stub.mkdir(parents=True)
    (stub / "mod.py").write_text(STUB)
    paths.append(subs / "stub")
    for name, a in attacks.items():
        paths.append(submission(subs, name, a.get("two", "return 0\n"), a.get("extra"),
                                a.get("top", "")))  # fmt: skip
    # 9. a submission named like the grader's own output: renamed, graded, nothing crashes
    z = subs / "gradebook.csv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(paths[0] / "lessons" / "09_demo" / "mod.py", "x/lessons/09_demo/mod.py")
    paths.append(z)
    hidden = tmp_path / "hidden" / "09_demo"
    hidden.mkdir(parents=True)
    (hidden / "test_extra.py").write_text(HIDDEN)
    before = {"course": _tree_digest(course), "subs": _tree_digest(subs), "venv": _venv_digest(),
              "package": _tree_digest(ROOT / "alexnet_course")}  # fmt: skip
    results = grade(paths, out, course=course, hidden=tmp_path / "hidden", timeout=4, jobs=2,
                    memory_mb=1024, echo=lambda s: None)  # fmt: skip
    time.sleep(2)  # a detached process would strike now
    after = {"course": _tree_digest(course), "subs": _tree_digest(subs), "venv": _venv_digest(),
             "package": _tree_digest(ROOT / "alexnet_course")}  # fmt: skip
    assert before == after
    assert not _marked_processes(), "a process started by a submission outlived the run"
    by = {r.name: {t.nodeid.split("::")[-1]: t for t in r.tests} for r in results}
    # the honest submission: full marks (the GPU test is listed, not run, and not counted)
    honest = json.loads((out / "honest" / "results.json").read_text())
    assert (honest["score"], honest["max_score"]) == (5, 5), honest
    gpu = next(t for t in honest["tests"] if t["number"] == "9.4")
    assert gpu["max_score"] == 0 and "needs CUDA" in gpu["output"]
    stub_res = json.loads((out / "stub" / "results.json").read_text())
    assert (stub_res["score"], stub_res["max_score"]) == (0, 5)
    wrong = []
    for name in attacks:
        data = json.loads((out / name / "results.json").read_text())
        tests = by[name]
        ok = (tests["test_two"].status != "passed" and tests["test_two_again"].status != "passed"
              and data["max_score"] == 5 and data["score"] <= 2)  # fmt: skip
        if name not in ("rewrite_tests", "patch_at_import", "swap_code_and_settrace",
                        "kill_everything", "sys_exit", "os_exit", "allocate_unbounded",
                        "loop_forever", "disable_alarm_and_hang", "own_conftest_and_settings"):
            ok = ok and tests["test_one"].status == "passed"  # the rest of it is graded
        if not ok:
            wrong.append((name, data))
    assert not wrong, json.dumps(wrong, indent=1)[:6000]
    # nothing of the hidden tests reaches a learner: no source, no output, no print
    everything = "".join((out / n / "results.json").read_text() for n in by)
    assert "SECRET" not in everything and "LEAK" in everything
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    assert book["honest"]["total"] == "5" and book["detached_rewriter"]["total"] == "2"
    renamed = [r.name for r in results if r.source == str(z)]
    assert renamed and renamed[0] != "gradebook.csv" and book[renamed[0]]["total"] == "5"
    assert len(book) == len(paths)


def test_a_broken_submission_scores_zero_with_the_reason_never_zero_of_zero(course, tmp_path):
    """Class 10: a syntax error or a missing file fails every test with its points and a
    reason; a folder with no learner files and a fake zip are not even run."""
    broken = submission(tmp_path / "subs", "broken", "return (\n")
    empty = tmp_path / "subs" / "empty" / "lessons" / "09_demo"
    empty.mkdir(parents=True)
    fake = tmp_path / "subs" / "fake.zip"
    fake.write_bytes(b"not a zip")
    t0 = time.perf_counter()
    res = {r.name: r for r in grade([tmp_path / "subs" / "empty", fake], tmp_path / "o1",
                                    course=course, timeout=10, echo=lambda s: None,
                                    use_sandbox=not NO_SANDBOX)}  # fmt: skip
    assert time.perf_counter() - t0 < 30
    for name, why in (("empty", "none of the learner files"), ("fake", "not a readable zip")):
        data = json.loads((tmp_path / "o1" / name / "results.json").read_text())
        assert (data["score"], data["max_score"]) == (0, 3), data
        assert all(why in t.output for t in res[name].tests if t.status != "skipped")
    res = grade([broken], tmp_path / "o2", course=course, timeout=10, echo=lambda s: None,
                use_sandbox=not NO_SANDBOX)[0]  # fmt: skip
    data = json.loads((tmp_path / "o2" / "broken" / "results.json").read_text())
    assert (data["score"], data["max_score"]) == (0, 3)
    assert all("SyntaxError" in t.output for t in res.tests if t.status != "skipped")


def test_colliding_names_are_renamed_and_graded(course, tmp_path, capsys):
    """Class 9: a submission named like the grader's own outputs, and two that sanitise to
    the same name, are each graded under a new name with one line saying so."""
    subs = tmp_path / "subs"
    a = submission(subs, "alice", HONEST_TWO)
    z = subs / "gradebook.csv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(a / "lessons" / "09_demo" / "mod.py", "x/lessons/09_demo/mod.py")
    b = submission(subs / "other", "alice", "return 0\n")
    lines = []
    results = grade([a, z, b], tmp_path / "out", course=course, timeout=10, echo=lines.append,
                    use_sandbox=not NO_SANDBOX)  # fmt: skip
    names = [r.name for r in results]
    assert names[0] == "alice" and names[1] != "gradebook.csv" and names[2] != "alice"
    assert len(set(names)) == 3 and sum("is graded as" in x for x in lines) == 2
    book = {r["submission"]: r for r in csv.DictReader(open(tmp_path / "out" / "gradebook.csv"))}
    assert book[names[1]]["total"] == "3" and book[names[2]]["total"] == "2"


def test_gradebook_results_json_zip_and_determinism(course, tmp_path):
    good = submission(tmp_path / "subs", "alice", HONEST_TWO)
    half = submission(tmp_path / "subs", "bob", "return 5\n")
    z = tmp_path / "subs" / "carol.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(good / "lessons" / "09_demo" / "mod.py", "carol/lessons/09_demo/mod.py")
    kw = dict(course=course, timeout=10, echo=lambda s: None, use_sandbox=not NO_SANDBOX)
    grade([good, half, z], tmp_path / "serial", **kw)
    grade([good, half, z], tmp_path / "parallel", jobs=3, **kw)
    book = (tmp_path / "serial" / "gradebook.csv").read_text()
    assert book == (tmp_path / "parallel" / "gradebook.csv").read_text()
    rows = {r["submission"]: r for r in csv.DictReader(open(tmp_path / "serial" / "gradebook.csv"))}
    assert rows["alice"]["total"] == "3" and rows["bob"]["total"] == "2"
    assert rows["carol"]["total"] == "3" and rows["bob"]["09_demo 9.2"] == "0"
    data = json.loads((tmp_path / "serial" / "bob" / "results.json").read_text())
    assert {"score", "max_score", "execution_time", "tests", "stdout_visibility"} <= set(data)
    t = next(t for t in data["tests"] if t["number"] == "9.2")
    assert t["status"] == "failed" and "two(3)" in t["output"] and "x squared plus one" in t["output"]
    assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}


def test_grade_without_bwrap_names_no_sandbox(course, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    sub = submission(tmp_path / "subs", "alice", HONEST_TWO)
    with pytest.raises(sandbox.SandboxError, match="--no-sandbox"):
        grade([sub], tmp_path / "out", course=course)
    assert not (tmp_path / "out").exists()


def test_bad_arguments_get_a_clear_error(course, tmp_path):
    good = submission(tmp_path / "subs", "erin", HONEST_TWO)
    with pytest.raises(GradeError, match="no such submission"):
        grade([tmp_path / "nope"], tmp_path / "o2", course=course)
    with pytest.raises(GradeError, match="unknown lesson"):
        grade([good], tmp_path / "o3", course=course, lessons=["42_nothing"])
    with pytest.raises(GradeError, match="inside the submission"):
        grade([good], good / "out", course=course)


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
    quick = ["01_data", "05_analysis"]
    kw = dict(course=ROOT, lessons=quick, timeout=120, echo=lambda s: None,
              use_sandbox=not NO_SANDBOX)  # fmt: skip
    rel = grade([out], tmp_path / "g", **kw)[0]
    assert {t.lesson for t in rel.tests} == set(quick)
    assert rel.tests and all(t.score == 0 for t in rel.tests)
    # full points through the grader, on the quick lessons (every lesson's suite passing on
    # its solution is checked in test_lessons.py)
    full = grade([tmp_path / "sol"], tmp_path / "g2", **kw)[0]
    assert all(t.status in ("passed", "skipped") for t in full.tests), [
        (t.nodeid, t.output[:300]) for t in full.tests if t.status not in ("passed", "skipped")]
