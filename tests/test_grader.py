"""The class grader: gradebook, hidden tests, the release, and the attacks a cheating learner
tries, written from what the learner release ships (the grader's source and the visible
tests). A tiny lesson keeps these fast; the real lessons are graded in test_lessons.py and
in the class-size run."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sysconfig
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from alexnet_course.authoring.release import release
from alexnet_course.grading import sandbox
from alexnet_course.grading.grader import GradeError, grade
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
# Attack 9: a hidden test written the natural way, calling the learner's function directly
# as the visible tests did before the observe/check split. It must grade honest work fully.
HIDDEN_NATURAL = '''
import pytest
from alexnet_course.grading import learner

mod = learner.load(__file__, "mod")


@pytest.mark.task("9.3", points=1)
def test_three_natural():
    assert mod.three([3, 1, 2]) == [1, 2, 3]
    assert mod.two(5) == 26  # SECRET natural
'''
TIERS = {}
for _tier in ("bwrap", "uid"):
    try:
        sandbox.choose(_tier)
        TIERS[_tier] = ""
    except sandbox.SandboxError as e:
        TIERS[_tier] = str(e)
NO_SANDBOX = TIERS["bwrap"]
needs_bwrap = pytest.mark.skipif(bool(NO_SANDBOX), reason=f"no sandbox here: {NO_SANDBOX}")
TIER = "bwrap" if not TIERS["bwrap"] else "uid" if not TIERS["uid"] else "none"
tiers = pytest.mark.parametrize("tier", [
    pytest.param(t, marks=pytest.mark.skipif(bool(why), reason=f"no {t} tier here: {why}"))
    for t, why in TIERS.items()])  # fmt: skip


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
                try:
                    t.write_text("import pytest\\n@pytest.mark.task('9.2', points=1000)\\n"
                                 "def test_two():\\n    pass\\n")
                except OSError:
                    pass
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
                for name in ("outcomes.json", "outcomes.jsonl"):
                    try:
                        open(os.path.join(d, name), "a").write(json.dumps(row) + "\\n")
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
        # 7. outliving the test process: the gradebook rewritten later, and (#28, attack 1)
        #    the test process's own outcomes file rewritten while pytest runs, found through
        #    /proc: a detached process (double fork, setsid) that appends "passed" rows
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
        "detached_outcomes_forger": {"top": '''
            import json, os, time
            NODES = ["09_demo/test_demo.py::" + n for n in ("test_one", "test_two", "test_three")]
            NODES.append("09_demo/test_hidden_extra.py::test_two_again")
            NODES.append("09_demo/test_hidden_natural.py::test_three_natural")
            def _forge():
                import ctypes
                ctypes.CDLL(None).prctl(15, b"alexnetmarker", 0, 0, 0)
                rows = "".join(json.dumps({"nodeid": n, "status": "passed", "output": ""}) + "\\n"
                               for n in NODES)
                for _ in range(120):
                    for pid in os.listdir("/proc"):
                        try:
                            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
                        except OSError:
                            continue
                        if b"--outcomes-json" in argv:
                            path = argv[argv.index(b"--outcomes-json") + 1].decode()
                            try:
                                open(path, "a").write(rows)
                            except OSError:
                                pass
                    time.sleep(0.1)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    try:
                        _forge()
                    finally:
                        os._exit(0)
                os._exit(0)
            ''', "two": "return 0\n"},
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
        # (#28, attack 4) process slots: take every process slot there is and keep grabbing
        # freed ones, so that a classmate's tests cannot start threads
        "process_slots": {"two": '''
            import os, time
            end = time.time() + 12
            while time.time() < end:
                try:
                    if os.fork() == 0:
                        while time.time() < end:
                            try:
                                if os.fork() == 0:
                                    time.sleep(max(0.0, end - time.time()))
                                    os._exit(0)
                            except OSError:
                                time.sleep(0.01)
                        os._exit(0)
                except OSError:
                    time.sleep(0.01)
            return 0
            '''},
        # (#28, attack 8) more than its share: 900 MB in /tmp, 1.2 GB in its folder, three
        # children of 250 MB; the right answer only if all of that worked
        "over_the_caps": {"two": '''
            import os, time
            def fill(path, mb):
                done = 0
                try:
                    with open(path, "wb") as f:
                        block = b"x" * 2**20
                        for _ in range(mb):
                            f.write(block)
                            done += 1
                        f.flush()
                except OSError:
                    pass
                return done
            wrote_tmp = sum(fill(f"/tmp/fill{i}", 300) for i in range(3))
            wrote_here = sum(fill(f"fill{i}", 400) for i in range(3))
            kids = []
            for _ in range(3):
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    try:
                        ballast = bytearray(250 * 2**20)
                        for i in range(0, len(ballast), 4096):
                            ballast[i] = 1
                        os.write(w, b"k")
                        time.sleep(30)
                    finally:
                        os._exit(0)
                kids.append((pid, r))
            alive = 0
            for pid, r in kids:
                try:
                    alive += len(os.read(r, 1))
                except OSError:
                    pass
            if wrote_tmp >= 900 and wrote_here >= 1200 and alive == 3:
                return x * x + 1
            raise RuntimeError(f"capped: {wrote_tmp} MB in /tmp, {wrote_here} MB here, {alive} children")
            '''},
        # (#28, attack 10) a module that never finishes importing (it searches the disk
        # forever): every test of the lesson fails at once, not each after its own limit
        "slow_import": {"top": '''
            import time
            while True:
                time.sleep(0.5)
            ''', "two": "return x * x + 1\n"},
        # 8. hidden tests leaking through a visible test's failure message
        "leak_hidden": {"two": '''
            import glob
            found = []
            places = ["/submission/*/", "/submission/*/*/", "../*/*/", "../../*/*/", "/tmp/**/",
                      "/course/**/", "/*/"]
            for place in places:
                for p in glob.glob(place + "test_hidden_*", recursive=True)[:5]:
                    try:
                        found.append(open(p).read())
                    except OSError:
                        pass
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


# Submissions refused at intake (#28, attacks 2 and 3): each is one error row, 0 points.
def _intake_attacks(subs: Path) -> dict[str, tuple[Path, str]]:
    """name -> (submission, the reason its row must give)."""
    import os

    honest = subs / "honest"
    out = {}
    d = subs / "symlink_to_classmate"
    d.mkdir()
    (d / "x").symlink_to("../honest")
    out["symlink_to_classmate"] = (d, "symbolic link")
    d = subs / "deep_symlink" / "lessons" / "09_demo"
    d.mkdir(parents=True)
    (d / "mod.py").symlink_to(honest / "lessons" / "09_demo" / "mod.py")
    out["deep_symlink"] = (subs / "deep_symlink", "symbolic link")
    d = subs / "hard_link" / "lessons" / "09_demo"
    d.mkdir(parents=True)
    # (a hard link to a classmate's file would refuse the classmate too: both names are
    # the one file; the instructor's own solution is the file worth linking to)
    os.link(subs.parent / "course" / "solutions" / "09_demo" / "mod.py", d / "mod.py")
    out["hard_link"] = (subs / "hard_link", "hard link")
    good = (honest / "lessons" / "09_demo" / "mod.py").read_bytes()

    def make_zip(name: str, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
        z = subs / f"{name}.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for info, data in members:
                zf.writestr(info, data)
        return z

    z = make_zip("zip_link", [(_link_info("x/lessons"), b"../../honest/lessons")])
    out["zip_link"] = (z, "symbolic link")
    z = make_zip("zip_encrypted", [("x/lessons/09_demo/mod.py", good)])
    _patch_flags(z, 0x1)
    out["zip_encrypted"] = (z, "encrypted")
    z = make_zip("zip_bad_name", [("x/lessons/09_demo/m\u00f6d.py", good)])
    raw = z.read_bytes().replace("m\u00f6d".encode(), b"m\xff\xfed")
    z.write_bytes(raw)
    out["zip_bad_name"] = (z, "zip")
    z = make_zip("zip_method_99", [("x/lessons/09_demo/mod.py", good)])
    _patch_method(z, 99)
    out["zip_method_99"] = (z, "method 99")
    z = make_zip("zip_corrupt", [("x/lessons/09_demo/mod.py", good * 50)])
    raw = bytearray(z.read_bytes())
    at = raw.index(b"x/lessons/09_demo/mod.py") + len("x/lessons/09_demo/mod.py") + 40
    raw[at:at + 64] = bytes(64)
    z.write_bytes(bytes(raw))
    out["zip_corrupt"] = (z, "zip")
    z = make_zip("zip_bomb", [("x/lessons/09_demo/mod.py", good),
                              ("x/lessons/09_demo/data.bin", bytes(400 * 2**20))])  # fmt: skip
    out["zip_bomb"] = (z, "bomb")
    z = make_zip("zip_escape", [("../../escaped.py", good)])
    out["zip_escape"] = (z, "outside")
    return out


def _link_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16)
    return info


def _patch_flags(z: Path, bits: int) -> None:
    import struct

    raw = bytearray(z.read_bytes())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = raw.find(sig)
        while i != -1:
            (flags,) = struct.unpack_from("<H", raw, i + off)
            struct.pack_into("<H", raw, i + off, flags | bits)
            i = raw.find(sig, i + 4)
    z.write_bytes(bytes(raw))


def _patch_method(z: Path, method: int) -> None:
    import struct

    raw = bytearray(z.read_bytes())
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = raw.find(sig)
        while i != -1:
            struct.pack_into("<H", raw, i + off, method)
            i = raw.find(sig, i + 4)
    z.write_bytes(bytes(raw))


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


def _pool_processes() -> list[int]:
    from alexnet_course.grading.confine import processes_of

    return processes_of(set(sandbox.pool()))


# the attacks that stop the learner's module itself (so test_one fails with them)
STOPS_THE_MODULE = {"rewrite_tests", "patch_at_import", "swap_code_and_settrace", "kill_everything",
                    "sys_exit", "os_exit", "allocate_unbounded", "loop_forever",
                    "disable_alarm_and_hang", "own_conftest_and_settings", "slow_import",
                    "process_slots", "over_the_caps"}  # fmt: skip


@tiers
@pytest.mark.slow
def test_no_attack_forges_a_grade_and_the_rest_is_graded(tier, course, tmp_path):
    """Every attack of a learner who has the release and the grader's source, graded with
    --jobs 2 beside an honest submission and a stub, in each sandbox tier this machine has:
    each scores 0 on what it targets, the honest one full marks, the stub 0, the class run
    finishes, nothing outside --out changes, and no process survives."""
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
    refused = _intake_attacks(subs)
    paths += [p for p, _ in refused.values()]
    # a submission named like the grader's own output: renamed, graded, nothing crashes
    z = subs / "gradebook.csv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(paths[0] / "lessons" / "09_demo" / "mod.py", "x/lessons/09_demo/mod.py")
    paths.append(z)
    hidden = tmp_path / "hidden" / "09_demo"
    hidden.mkdir(parents=True)
    (hidden / "test_extra.py").write_text(HIDDEN)
    (hidden / "test_natural.py").write_text(HIDDEN_NATURAL)
    before = {"course": _tree_digest(course), "subs": _tree_digest(subs), "venv": _venv_digest(),
              "package": _tree_digest(ROOT / "alexnet_course")}  # fmt: skip
    t0 = time.perf_counter()
    results = grade(paths, out, course=course, hidden=tmp_path / "hidden", timeout=4, jobs=2,
                    memory_mb=700, disk_mb=600, processes=128, sandbox_tier=tier,
                    echo=lambda s: None)  # fmt: skip
    wall = time.perf_counter() - t0
    written = _tree_digest(out)
    time.sleep(2)  # a detached process would strike now
    after = {"course": _tree_digest(course), "subs": _tree_digest(subs), "venv": _venv_digest(),
             "package": _tree_digest(ROOT / "alexnet_course")}  # fmt: skip
    assert before == after
    assert _tree_digest(out) == written, "--out changed after the grader returned"
    assert not _marked_processes(), "a process started by a submission outlived the run"
    assert not _pool_processes(), "a process of a pool uid outlived the run"
    assert len(results) == len(paths), "the class run did not finish"
    by = {r.name: {t.nodeid.split("::")[-1]: t for t in r.tests} for r in results}
    res = {r.name: r for r in results}
    # the honest submission: full marks (the GPU test is listed, not run, and not counted)
    honest = json.loads((out / "honest" / "results.json").read_text())
    assert (honest["score"], honest["extra_data"]["max_score"]) == (6, 6), honest
    assert honest["extra_data"]["sandbox"] == tier
    gpu = next(t for t in honest["tests"] if t["number"] == "9.4")
    assert gpu["max_score"] == 0 and "needs CUDA" in gpu["output"]
    stub_res = json.loads((out / "stub" / "results.json").read_text())
    assert (stub_res["score"], stub_res["extra_data"]["max_score"]) == (0, 6)
    wrong = []
    for name in attacks:
        data = json.loads((out / name / "results.json").read_text())
        tests = by[name]
        ok = (tests["test_two"].status != "passed" and tests["test_two_again"].status != "passed"
              and data["extra_data"]["max_score"] == 6 and data["score"] <= 2)  # fmt: skip
        if name not in STOPS_THE_MODULE:
            ok = ok and tests["test_one"].status == "passed"  # the rest of it is graded
        if not ok:
            wrong.append((name, data))
    for name, (_path, why) in refused.items():
        data = json.loads((out / name / "results.json").read_text())
        if data["score"] != 0 or data["extra_data"]["max_score"] != 6 or why not in data.get("output", ""):
            wrong.append((name, data))
    assert not wrong, json.dumps(wrong, indent=1)[:6000]
    # attack 10: the module that never finishes importing costs one load limit, not one
    # test limit per test, and every test says why
    slow = res["slow_import"]
    assert all("did not finish importing" in t.output for t in slow.tests if t.status != "skipped")
    assert slow.seconds < 60, slow.seconds
    # attack 8: the caps held (the answer comes only if all of it worked)
    assert by["over_the_caps"]["test_two"].status == "failed"
    # nothing of the hidden tests reaches a learner: no source, no output, no print
    everything = "".join((out / n / "results.json").read_text() for n in by)
    assert "SECRET" not in everything and "LEAK" in everything
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    assert book["honest"]["total"] == "6" and book["detached_rewriter"]["total"] == "2"
    assert {row["sandbox"] for row in book.values()} == {tier}
    renamed = [r.name for r in results if r.source == str(z)]
    assert renamed and renamed[0] != "gradebook.csv" and book[renamed[0]]["total"] == "6"
    assert len(book) == len(paths)
    print(f"{tier}: {len(paths)} submissions in {wall:.0f} s")


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
                                    sandbox_tier=TIER)}  # fmt: skip
    assert time.perf_counter() - t0 < 30
    for name, why in (("empty", "none of the learner files"), ("fake", "not a readable zip")):
        data = json.loads((tmp_path / "o1" / name / "results.json").read_text())
        assert (data["score"], data["extra_data"]["max_score"]) == (0, 3), data
        assert all(why in t.output for t in res[name].tests if t.status != "skipped")
    res = grade([broken], tmp_path / "o2", course=course, timeout=10, echo=lambda s: None,
                sandbox_tier=TIER)[0]  # fmt: skip
    data = json.loads((tmp_path / "o2" / "broken" / "results.json").read_text())
    assert (data["score"], data["extra_data"]["max_score"]) == (0, 3)
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
                    sandbox_tier=TIER)  # fmt: skip
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
    kw = dict(course=course, timeout=10, echo=lambda s: None, sandbox_tier=TIER)
    grade([good, half, z], tmp_path / "serial", **kw)
    grade([good, half, z], tmp_path / "parallel", jobs=3, **kw)
    book = (tmp_path / "serial" / "gradebook.csv").read_text()
    assert book == (tmp_path / "parallel" / "gradebook.csv").read_text()
    rows = {r["submission"]: r for r in csv.DictReader(open(tmp_path / "serial" / "gradebook.csv"))}
    assert rows["alice"]["total"] == "3" and rows["bob"]["total"] == "2"
    assert rows["carol"]["total"] == "3" and rows["bob"]["09_demo 9.2"] == "0"
    data = json.loads((tmp_path / "serial" / "bob" / "results.json").read_text())
    assert {"score", "extra_data", "execution_time", "tests", "stdout_visibility"} <= set(data)
    t = next(t for t in data["tests"] if t["number"] == "9.2")
    assert t["status"] == "failed" and "two(3)" in t["output"] and "x squared plus one" in t["output"]
    assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}


def test_auto_tier_without_bwrap_is_the_uid_tier_as_root_else_one_line(course, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    sub = submission(tmp_path / "subs", "alice", HONEST_TWO)
    with pytest.raises(sandbox.SandboxError, match="bubblewrap"):
        grade([sub], tmp_path / "o1", course=course, sandbox_tier="bwrap")
    if not TIERS["uid"]:
        res = grade([sub], tmp_path / "o2", course=course, timeout=10, echo=lambda s: None)[0]
        assert res.sandbox == "uid" and res.score == 3
    monkeypatch.setattr(sandbox, "_is_root", lambda: False)
    with pytest.raises(sandbox.SandboxError, match="--sandbox none") as e:
        grade([sub], tmp_path / "o3", course=course)
    assert "\n" not in str(e.value) and not (tmp_path / "o3").exists()


@pytest.mark.skipif(bool(TIERS["uid"]), reason=f"no uid tier here: {TIERS['uid']}")
def test_uid_tier_refuses_while_learner_code_could_read_the_solutions(tmp_path):
    import os
    import shutil
    import tempfile

    open_dir = Path(tempfile.mkdtemp(prefix="world-readable-"))
    try:
        os.chmod(open_dir, 0o755)
        c = open_dir / "course"
        (c / "lessons" / "09_demo").mkdir(parents=True)
        (c / "lessons" / "09_demo" / "mod.py").write_text(STUB)
        (c / "lessons" / "09_demo" / "test_demo.py").write_text(TESTS)
        (c / "solutions" / "09_demo").mkdir(parents=True)
        (c / "solutions" / "09_demo" / "mod.py").write_text(SOLUTION)
        for p in [c, *c.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        sub = submission(tmp_path / "subs", "alice", HONEST_TWO)
        with pytest.raises(GradeError, match="can read .*solutions"):
            grade([sub], tmp_path / "out", course=c, sandbox_tier="uid")
        os.chmod(c / "solutions", 0o700)
        res = grade([sub], tmp_path / "out", course=c, sandbox_tier="uid", timeout=10,
                    echo=lambda s: None)[0]  # fmt: skip
        assert res.score == 3
    finally:
        shutil.rmtree(open_dir, ignore_errors=True)


OBJECT_HIDDEN = '''
import pytest
from alexnet_course.grading import learner

mod = learner.load(__file__, "mod")


@pytest.mark.task("9.1", points=1)
def test_one_as_an_object():
    assert mod.make_counter().count == 0  # returns an object: cannot leave the sandbox
'''


def test_a_hidden_test_the_sandbox_cannot_serve_stops_the_grader_first(course, tmp_path):
    """Attack 9's other half: a hidden test that takes an object out of learner code fails
    on the reference solution too; the grader stops before any submission runs, with one
    line that names the test and how to write it."""
    (course / "solutions" / "09_demo" / "mod.py").write_text(
        SOLUTION + "\n\nclass make_counter:\n    count = 0\n")  # fmt: skip
    hidden = tmp_path / "hidden" / "09_demo"
    hidden.mkdir(parents=True)
    (hidden / "test_object.py").write_text(OBJECT_HIDDEN)
    sub = submission(tmp_path / "subs", "alice", HONEST_TWO)
    with pytest.raises(GradeError) as e:
        grade([sub], tmp_path / "out", course=course, hidden=tmp_path / "hidden", timeout=10,
              sandbox_tier=TIER, echo=lambda s: None)  # fmt: skip
    text = str(e.value)
    assert "test_one_as_an_object" in text and "observe half" in text, text
    assert not (tmp_path / "out" / "alice").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stopped_grader_leaves_no_worker_and_no_scratch(course, tmp_path, signum):
    import os
    import signal
    import subprocess
    import sys

    subs = tmp_path / "subs"
    paths = [submission(subs, f"slow{i}", "import time\ntime.sleep(60)\nreturn 0\n")
             for i in range(3)]  # fmt: skip
    before = set(Path(tempfile_dir()).glob("alexnet-course-grade-*"))
    proc = subprocess.Popen([sys.executable, "-m", "alexnet_course", "grade", *map(str, paths),
                             "--out", str(tmp_path / "out"), "--course", str(course),
                             "--sandbox", TIER, "--timeout", "100", "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:  # until learner code runs
        time.sleep(0.5)
        from alexnet_course.grading.confine import descendants

        if len(descendants(proc.pid)) >= 4 and (TIER == "none" or _pool_processes()
                                                or TIER == "bwrap"):  # fmt: skip
            break
    time.sleep(3)
    scratch = set(Path(tempfile_dir()).glob("alexnet-course-grade-*")) - before
    assert scratch, "the grader made no scratch folder"
    os.kill(proc.pid, getattr(signal, signum))
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "stopped by a signal" in output and "Traceback" not in output, output
    assert not any(p.exists() for p in scratch), "the scratch folder is still there"
    from alexnet_course.grading.confine import descendants

    time.sleep(0.5)
    assert not descendants(proc.pid) and not _pool_processes()


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.skipif(bool(TIERS["bwrap"]), reason=f"no bwrap here: {TIERS['bwrap']}")
@pytest.mark.skipif(not sandbox._is_root(), reason="needs root to start the test as another uid")
def test_a_non_root_graders_process_cap_is_per_sandbox(tmp_path):
    """Attack 4 for a grader that is not root (all its sandboxes run as its one uid): the
    worker sets the cap inside its sandbox's own user namespace, where the kernel counts
    per namespace, so one sandbox that takes every slot it may have leaves another sandbox
    of the same uid free to start its threads."""
    import subprocess
    import sys

    uid = sandbox.pool()[-1]
    tier = sandbox.Tier("bwrap", "a grader that is not root")  # no pool uids: no switch
    argv = sandbox.worker_command(tmp_path, tmp_path, tier, limits=sandbox.Limits(processes=40))
    boot = argv[-1]
    cap = boot.split("sys.meta_path")[0]
    assert "RLIMIT_NPROC" in cap and "(40, 40)" in cap  # set inside, before learner code
    hog = cap + ("import os, time\nn = 0\nwhile True:\n    try:\n        if os.fork() == 0:\n"
                 "            time.sleep(30); os._exit(0)\n        n += 1\n    except OSError:\n"
                 "        break\nprint(n, flush=True)\ntime.sleep(30)\n")  # fmt: skip
    honest = cap + ("import threading, time\nts = [threading.Thread(target=time.sleep, args=(1,))"
                    " for _ in range(20)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n"
                    "print('ok', flush=True)\n")  # fmt: skip
    procs = []
    try:
        for code in (hog, honest):
            inner = [sandbox._bwrap(), *sandbox._namespace_flags(), *sandbox._system_binds(),
                     "--", sys.executable, "-I", "-S", "-c", code]  # fmt: skip
            cmd = sandbox.launch_command(inner, uid=uid, cwd="/", env={"PATH": "/usr/bin:/bin"},
                                         rlimits={}, cgroups=[])  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))  # fmt: skip
            if code is hog:
                first = procs[0].stdout.readline()
        out, err = procs[1].communicate(timeout=60)
        assert "ok" in out, err
    finally:
        from alexnet_course.grading.confine import kill_uids

        kill_uids({uid})
        for p in procs:
            p.kill()
            p.wait()
    assert first.strip() and int(first) < 40, first


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
    assert not (out / "alexnet_course" / "devtools").exists()  # the project's own tooling
    assert (ROOT / "docs" / "results" / "mutants").is_dir()  # quotes the solutions line by line
    assert not (out / "docs" / "results" / "mutants").exists()
    assert "devtools" not in (out / "docs" / "reference.md").read_text()
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
              sandbox_tier=TIER, calibrate=False)  # the second run grades the solutions
    rel = grade([out], tmp_path / "g", **kw)[0]
    assert {t.lesson for t in rel.tests} == set(quick)
    assert rel.tests and all(t.score == 0 for t in rel.tests)
    # full points through the grader, on the quick lessons (every lesson's suite passing on
    # its solution is checked in test_lessons.py)
    full = grade([tmp_path / "sol"], tmp_path / "g2", **kw)[0]
    assert all(t.status in ("passed", "skipped") for t in full.tests), [
        (t.nodeid, t.output[:300]) for t in full.tests if t.status not in ("passed", "skipped")]


# ---------------------------------------------------------------- attacks on lesson 03 (#28)
ZERO_MODEL = '''

_Paper = AlexNet


class AlexNet(_Paper):  # every layer of the paper's shape, all weights 0, every forward 0
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        for p in self.parameters():
            nn.init.zeros_(p)

    def forward(self, x):
        return x.new_zeros(x.shape[0], self.classifier[-1].out_features)


_conv1 = conv1_block


def conv1_block(norm="lrn"):
    block = _conv1(norm)
    for p in block.parameters():
        nn.init.zeros_(p)
    block.forward = lambda x: x.new_zeros(x.shape[0], 96, 27, 27)
    return block
'''
CACHED_SPEED = '''

import sys as _sys
import time as _time

_speed = _sys.modules.get("_graded_test_speed")  # the test file, loaded before this one
if _speed is not None:
    _real_steps, _memo = _speed._run_steps, {}

    def _cached(state, steps, pixels, labels, rows):
        if "end" not in _memo:  # the untimed warm-up: the slow model's real work, once
            _time.sleep(5)
            _memo["end"] = _real_steps(state, steps, pixels, labels, rows)
        return _memo["end"]  # every timed call: no work at all

    _speed._run_steps = _cached
'''
REFERENCE_HELPERS = '''

import sys as _sys


def _forward_from_the_tests(self, x):  # the visible tests' own reference network
    tests = _sys.modules.get("_graded_test_model") or __import__("test_model")
    layers = [(m.weight, m.bias) for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return tests.reference_alexnet(x, layers, getattr(self, "_norm", "lrn"))


AlexNet.forward = _forward_from_the_tests
'''
L03 = "03_torch_scratch"
L03_TASKS = ["3.2", "3.6", "3.11"]


@tiers
@pytest.mark.slow
def test_lesson_03_attacks_score_nothing_they_did_not_do(tier, tmp_path):
    """Attacks 5-7 of #28 on the real lesson 03, graded beside the solution and the stub:
    an all-zero model, a speed test passed from a cache, and learner code that borrows the
    visible tests' reference network in the worker."""
    import shutil

    course = tmp_path / "course"  # the lessons only: under the uid tier nothing else is readable
    shutil.copytree(ROOT / "lessons" / L03, course / "lessons" / L03)
    shutil.copytree(ROOT / "solutions" / L03, course / "solutions" / L03)
    (course / "pyproject.toml").write_text("")
    solution = (ROOT / "solutions" / L03 / "alexnet.py").read_text()
    train = (ROOT / "solutions" / L03 / "train.py").read_text()
    subs = tmp_path / "subs"
    cases = {"honest": solution, "stub": (ROOT / "lessons" / L03 / "alexnet.py").read_text(),
             "all_zero_model": solution + ZERO_MODEL, "cached_speed": solution + CACHED_SPEED,
             "reference_helpers": solution + REFERENCE_HELPERS}  # fmt: skip
    for name, text in cases.items():
        d = subs / name / "lessons" / L03
        d.mkdir(parents=True)
        (d / "alexnet.py").write_text(text)
        (d / "train.py").write_text(train)
    results = grade([subs / n for n in cases], tmp_path / "out", course=course, lessons=[L03],
                    tasks=L03_TASKS, timeout=120, jobs=2, sandbox_tier=tier,
                    echo=lambda s: None)  # fmt: skip
    by = {r.name: {t.nodeid.split("::")[-1]: t for t in r.tests} for r in results}
    honest = next(r for r in results if r.name == "honest")
    assert honest.score == honest.max_score > 0, [(t.nodeid, t.output[-300:]) for t in honest.tests
                                                   if t.status != "passed"]  # fmt: skip
    assert next(r for r in results if r.name == "stub").score == 0
    values = [n for n in by["all_zero_model"] if any(
        k in n for k in ("values", "forward", "channels_last", "norm_switch"))]  # fmt: skip
    assert len(values) >= 5
    passed = [n for n in values if by["all_zero_model"][n].status == "passed"]
    assert not passed, f"an all-zero model passed {passed}"
    speed = by["cached_speed"]["test_training_throughput_against_reference"]
    assert speed.status == "failed", speed.output[-500:]
    forward = by["reference_helpers"]["test_alexnet_forward_matches_reference"]
    assert forward.status == "failed", forward.output[-500:]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_disk_scan_counts_what_a_uid_wrote_and_skips_folders_it_could_not_write(tmp_path, monkeypatch):
    """A busy /tmp (a clean clone with its virtual environment under it) made the uid tier's
    disk scan stop at its entry limit and report every honest submission over its cap."""
    from alexnet_course.grading import confine

    uid = 61999
    big = tmp_path / "checkout"  # the grader's: 0755, not the uid's
    big.mkdir(mode=0o755)
    for i in range(40):
        (big / f"f{i}").write_text("x")
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("a", "b"):
        (mine / name).write_bytes(b"y" * 5000)
        os.chown(mine / name, uid, uid)
    os.chown(mine, uid, uid)
    shared = tmp_path / "shared"  # world-writable, like /tmp
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "c").write_text("z")
    os.chown(shared / "c", uid, uid)
    monkeypatch.setattr(confine, "MAX_SCAN", 20)  # the checkout alone would pass it
    size, count, tops = confine.files_of({uid}, [tmp_path])
    assert count == 4 and size > 0, (size, count)
    assert sorted(p.name for p in tops) == ["c", "mine"]


def test_worker_views_made_by_concurrent_submissions_never_parse_at_once(monkeypatch):
    """Submissions are graded in threads, and each writes its lessons' worker views. On the
    CPython this course supports (3.11.7 here) two ``ast.parse`` calls at once can fail one
    with 'AST constructor recursion depth mismatch' (gh-106905; a CI run lost an honest
    submission's lesson 03 to it), so the views must never parse at the same time."""
    import ast
    import threading

    from alexnet_course.grading import views

    real, inside, most = ast.parse, [0], [0]
    count = threading.Lock()

    def slow_parse(*args, **kwargs):
        with count:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)  # a thread switch in the middle, as a finaliser may cause
        try:
            return real(*args, **kwargs)
        finally:
            with count:
                inside[0] -= 1

    monkeypatch.setattr(views.ast, "parse", slow_parse)
    source = (ROOT / "lessons" / "03_torch_scratch" / "test_model.py").read_text()
    outs: list[str] = []
    threads = [threading.Thread(target=lambda: outs.append(views.worker_view(source)[0]))
               for _ in range(6)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 6 and len(set(outs)) == 1
    assert most[0] == 1, f"{most[0]} parses ran at once"
