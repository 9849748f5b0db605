"""``alexnet-course grade``: grade a class of submissions, tamper-evidently, into a gradebook.

For each submission (a folder or a .zip holding a learner's copy of ``lessons/``) and each
lesson, the grader copies ONLY the learner files (the files the stub generator writes) out of
the submission, next to the instructor's pristine graded tests (and ``--hidden`` tests) in a
fresh temporary folder, and runs pytest there in a separate process: its own session, a
memory limit, a time limit per test, no user site-packages, the learner's own conftest.py,
pytest settings, sitecustomize.py and .pth files never copied. Results come back through an
authenticated pipe, one test at a time (see :mod:`alexnet_course.grading.integrity`); when
the test process dies, hangs or is caught tampering, the test it was running scores 0 and
the remaining tests run again in a fresh process.

Outputs: ``OUT/<submission>/results.json`` (Gradescope's format) as soon as a submission is
graded, ``OUT/gradebook.csv`` (a row per submission, a column per task, the total) rewritten
after each, and a summary table.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.grading.integrity import KEY_FD_ENV, REPORT_FD_ENV, verify
from alexnet_course.grading.plugin import HIDDEN_PREFIX
from alexnet_course.grading.stubs import LESSON_DIR, learner_files

MAX_ZIP_BYTES = 500 * 2**20
# Starts pytest with the private copy of the course package first: the editable install's
# import hook (setuptools' __editable__ finder) would otherwise win over sys.path.
BOOTSTRAP = (
    "import sys; private = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
    "getattr(f, '__module__', type(f).__module__)]; "
    "sys.path.insert(0, private); import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


class GradeError(CourseError):
    """The grading command was given something it cannot use."""


@dataclass
class LessonSpec:
    """What the instructor's course says a lesson is, read once before any learner code runs."""

    name: str
    learner_files: list[str]
    tests: dict[str, bytes]  # file name -> content (pristine, kept in memory)


@dataclass
class TestResult:
    nodeid: str
    lesson: str
    task: str
    points: float
    hidden: bool
    status: str = "failed"
    output: str = ""
    final: bool = False

    @property
    def score(self) -> float:
        return self.points if self.status == "passed" else 0.0

    @property
    def max_points(self) -> float:
        """A GPU test skipped on a machine without one counts for nothing (as in the plugin)."""
        return 0.0 if self.status == "skipped" else self.points


@dataclass
class SubmissionResult:
    name: str
    tests: list[TestResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------- the course side
def read_lessons(course: Path, lessons: list[str] | None, hidden: Path | None) -> list[LessonSpec]:
    root = course / "lessons"
    if not root.is_dir():
        raise GradeError(f"no lessons/ folder in {course}: run the grader from the course")
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and LESSON_DIR.match(p.name))
    chosen = lessons or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise GradeError(f"unknown lesson(s) {', '.join(unknown)}; the course has "
                         f"{', '.join(available)}")  # fmt: skip
    specs = []
    for name in chosen:
        folder = root / name
        tests = {p.name: p.read_bytes() for p in sorted(folder.glob("test_*.py"))}
        if hidden is not None and (hidden / name).is_dir():
            for p in sorted((hidden / name).glob("test_*.py")):
                tests[HIDDEN_PREFIX + p.name.removeprefix("test_")] = p.read_bytes()
        files = [p.name for p in learner_files(folder)]
        if not tests:
            raise GradeError(f"{folder} has no graded tests (test_*.py)")
        specs.append(LessonSpec(name, files, tests))
    return specs


def package_fingerprint(course: Path | None = None, hidden: Path | None = None) -> dict[Path, bytes]:
    """The files a submission must not change: the course package's source, the lessons'
    graded tests and the hidden tests. Kept in memory, restored after every lesson run."""
    pkg = Path(__file__).resolve().parents[1]
    files = sorted(pkg.rglob("*.py"))
    if course is not None:
        files += sorted((course / "lessons").glob("*/test_*.py"))
    if hidden is not None:
        files += sorted(hidden.glob("*/test_*.py"))
    return {p.resolve(): p.read_bytes() for p in files}


def package_files(pristine: dict[Path, bytes]) -> dict[str, bytes]:
    """The course package's files from the pristine copy, keyed by path under its parent."""
    pkg = Path(__file__).resolve().parents[1]
    return {str(p.relative_to(pkg.parent)): c for p, c in pristine.items()
            if p.is_relative_to(pkg)}  # fmt: skip


def restore_package(pristine: dict[Path, bytes], keep: Path) -> list[str]:
    """Put back every course file that differs from its pristine content, first copying the
    changed file into ``keep`` (nothing is lost). Returns the changed files' names."""
    changed = []
    for path, content in pristine.items():
        try:
            now = path.read_bytes()
        except OSError:
            now = None
        if now != content:
            if now is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"{len(changed)}-{path.name}").write_bytes(now)
            path.write_bytes(content)
            changed.append(path.name)
    return changed


# ---------------------------------------------------------------- the submission side
def safe_name(path: Path) -> str:
    stem = path.name[:-4] if path.name.endswith(".zip") else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "submission"


def unpack(submission: Path, dest: Path) -> Path:
    """A submission folder, or a .zip extracted safely (no absolute paths, no '..', no links,
    bounded size)."""
    if submission.is_dir():
        return submission
    if not submission.is_file():
        raise GradeError(f"{submission}: no such file or folder")
    try:
        with zipfile.ZipFile(submission) as zf:
            total = 0
            for info in zf.infolist():
                name = info.filename
                if name.startswith(("/", "\\")) or ".." in Path(name).parts:
                    raise GradeError(f"{submission}: unsafe path in zip: {name!r}")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    continue  # a symbolic link: skipped
                total += info.file_size
                if total > MAX_ZIP_BYTES:
                    raise GradeError(f"{submission}: unpacks to more than "
                                     f"{MAX_ZIP_BYTES >> 20} MB")  # fmt: skip
                zf.extract(info, dest)
    except zipfile.BadZipFile as e:
        raise GradeError(f"{submission}: not a readable zip file ({e})") from None
    return dest


def find_lessons_root(folder: Path) -> Path:
    """The folder holding NN_name/ lesson folders inside a submission."""
    candidates = [folder / "lessons", folder]
    candidates += [d / "lessons" for d in sorted(folder.iterdir()) if d.is_dir()]
    candidates += [d for d in sorted(folder.iterdir()) if d.is_dir()]
    for c in candidates:
        if c.is_dir() and not c.is_symlink() and any(
            d.is_dir() and LESSON_DIR.match(d.name) for d in c.iterdir()
        ):
            return c
    raise GradeError(f"{folder}: no lessons/NN_name/ folder found in the submission")


# ---------------------------------------------------------------- running one lesson
def _limits(memory_mb: int):
    def apply() -> None:
        import resource

        if memory_mb:
            limit = memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _run_once(run_dir: Path, spec: LessonSpec, nodeids: list[str] | None, timeout: float,
              memory_mb: int, on_record, package: dict[str, bytes]) -> tuple[int | None, str]:  # fmt: skip
    """One pytest process over ``nodeids`` (all tests when None). Calls ``on_record`` for each
    authentic record; returns (exit code or None if killed, reason)."""
    key = secrets.token_bytes(32)
    r_fd, w_fd = os.pipe()
    kr_fd, kw_fd = os.pipe()
    os.write(kw_fd, key)
    os.close(kw_fd)
    ini = run_dir / "grader.ini"
    ini.write_text("[pytest]\n")
    # A private copy of the course package, first on the path: a submission that edits the
    # package edits only its own copy, never what a submission graded beside it imports.
    # It is written from the copy read into memory before grading began, not from disk.
    private = run_dir / "_course"
    for rel, content in package.items():
        (private / rel).parent.mkdir(parents=True, exist_ok=True)
        (private / rel).write_bytes(content)
    targets = nodeids if nodeids is not None else [spec.name]
    inner = [sys.executable, "-s", "-c", BOOTSTRAP, str(private), "-c", str(ini), "--rootdir", str(run_dir),
             "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--no-header",
             "--benchmark-disable-gc", "--task-timeout", str(timeout), *targets]  # fmt: skip
    # A shell between us and pytest: learner code that kills its parent kills the shell.
    cmd = ["/bin/sh", "-c", '"$@" & wait', "sh", *inner]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    env.update({REPORT_FD_ENV: str(w_fd), KEY_FD_ENV: str(kr_fd), "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1"})
    log = open(run_dir / "pytest-output.txt", "ab")
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, pass_fds=(w_fd, kr_fd),
                            start_new_session=True, preexec_fn=_limits(memory_mb))  # fmt: skip
    os.close(w_fd)
    os.close(kr_fd)
    buf, reason = b"", ""
    idle_limit = timeout + min(30.0, timeout)  # the plugin stops a test at `timeout`; this
    # catches what it cannot (a hang in C code, a learner who disabled the alarm)
    last = time.monotonic()
    with os.fdopen(r_fd, "rb", buffering=0) as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], 1.0)
            if ready:
                chunk = pipe.read(65536)
                if not chunk:
                    break  # every writer closed: the test process is gone
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    record = verify(key, line.decode(errors="replace"))
                    if record is not None:
                        last = time.monotonic()
                        on_record(record)
            elif time.monotonic() - last > idle_limit:
                reason = f"no progress for {idle_limit:.0f} s: the test process was stopped"
                break
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    code = proc.wait()
    log.close()
    return (None if reason else code), reason


def grade_lesson(spec: LessonSpec, lessons_root: Path | None, *, timeout: float,
                 memory_mb: int, workdir: Path, package: dict[str, bytes]) -> list[TestResult]:  # fmt: skip
    """Every graded test of one lesson for one submission, robust to crashes and tampering."""
    results: dict[str, TestResult] = {}
    order: list[str] = []
    notes: list[str] = []
    attempt = 0
    remaining: list[str] | None = None
    while True:
        attempt += 1
        run_dir = workdir / f"run{attempt}"
        lesson_dir = run_dir / spec.name
        lesson_dir.mkdir(parents=True)
        for name, content in spec.tests.items():  # pristine copies, fresh for every run
            (lesson_dir / name).write_bytes(content)
        src = lessons_root / spec.name if lessons_root is not None else None
        for name in spec.learner_files:
            f = src / name if src is not None else None
            if f is not None and f.is_file() and not f.is_symlink():
                shutil.copyfile(f, lesson_dir / name)
        state = {"current": None, "done": False, "tampered": False}

        def on_record(rec: dict, state=state, run_dir=run_dir) -> None:
            event = rec.get("event")
            if event == "collected" and not order:
                for t in rec["tests"]:
                    nodeid = t["nodeid"]
                    order.append(nodeid)
                    results[nodeid] = TestResult(nodeid, spec.name, t["task"],
                                                 float(t["points"]), bool(t["hidden"]),
                                                 status="failed", output="not run")  # fmt: skip
            elif event == "start":
                state["current"] = rec["nodeid"]
            elif event == "result" and rec["nodeid"] in results:
                r = results[rec["nodeid"]]
                r.status, r.output = rec["status"], rec["output"]
                r.output = r.output if r.status != "passed" else ""
                r.final = True
                if rec.get("tampered"):
                    state["tampered"] = True
                state["current"] = None
            elif event == "done":
                state["done"] = True

        code, reason = _run_once(run_dir, spec, remaining, timeout, memory_mb, on_record,
                                 package)  # fmt: skip
        if not order:
            out = (run_dir / "pytest-output.txt").read_text(errors="replace")[-2000:]
            notes.append(f"{spec.name}: the tests could not be collected (exit {code}).\n{out}")
            break
        cur = state["current"]
        if cur is not None and cur in results:
            why = reason or f"the test process ended during this test (exit code {code})"
            results[cur].status, results[cur].output = "failed", why
            results[cur].final = True
        if state["done"] and not state["tampered"]:
            break
        remaining = [n for n in order if not results[n].final]
        if not remaining or attempt > len(order):
            break
        notes.append(f"{spec.name}: run {attempt} ended early ({reason or f'exit {code}'}); "
                     f"re-running {len(remaining)} remaining test(s) in a fresh process")
    out = [results[n] for n in order]
    for r in out:
        if not r.final and r.output == "not run":
            r.output = "not run: the test process ended before this test"
    if notes:
        for r in out[:1]:
            r.output = (r.output + "\n" if r.output else "") + "\n".join(notes)
    return out


# ---------------------------------------------------------------- whole submissions
class CourseGuard:
    """Checks after every lesson run that no course file changed. A changed file is kept
    (copied to ``OUT/_modified/``: nothing is lost, an instructor's own edit made during
    grading included) and the pristine content put back. Every run in flight since the
    previous check could have made the change: those are graded again one at a time, where
    the culprit is certain."""

    def __init__(self, pristine: dict[Path, bytes], keep: Path) -> None:
        self.pristine = pristine
        self.keep = keep
        self.lock = threading.Lock()
        self.runs: dict[int, tuple[str, str, float | None]] = {}  # id -> (sub, lesson, end)
        self.last_check = 0.0
        self.suspects: set[tuple[str, str]] = set()
        self._next = 0

    def begin(self, submission: str, lesson: str) -> int:
        with self.lock:
            self._next += 1
            self.runs[self._next] = (submission, lesson, None)
            return self._next

    def end(self, run: int) -> list[str]:
        with self.lock:
            sub, lesson, _ = self.runs[run]
            now = time.monotonic()
            self.runs[run] = (sub, lesson, now)
            touched = restore_package(self.pristine, self.keep / f"{sub}-{lesson}-{run}")
            if touched:
                for s, les, ended in self.runs.values():
                    if ended is None or ended >= self.last_check:  # in flight since last check
                        self.suspects.add((s, les))
            self.last_check = now
            return touched


def grade_submission(path: Path, specs: list[LessonSpec], *, timeout: float, memory_mb: int,
                     guard: CourseGuard, exclusive: bool) -> SubmissionResult:  # fmt: skip
    """Grade every lesson of one submission. With ``exclusive`` (nothing else is being graded
    at the same time) a change to the course files is this submission's: the lesson scores 0.
    """
    name = safe_name(path)
    result = SubmissionResult(name)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"grade-{name}-") as tmp:
        tmp = Path(tmp)
        try:
            lessons_root = find_lessons_root(unpack(path, tmp / "submission"))
        except (GradeError, OSError) as e:
            result.errors.append(str(e))
            lessons_root = None
        for spec in specs:
            run = guard.begin(name, spec.name)
            tests = grade_lesson(spec, lessons_root, timeout=timeout, memory_mb=memory_mb,
                                 workdir=tmp / spec.name, package=package_files(guard.pristine))
            touched = guard.end(run)
            if touched and exclusive:
                result.errors.append(f"{spec.name}: course files were modified during "
                                     f"grading ({', '.join(touched)}); restored (the modified "
                                     "copies are in _modified/), lesson scored 0")  # fmt: skip
                for t in tests:
                    t.status, t.output = "failed", "course files were modified"
            result.tests += tests
    result.seconds = time.time() - t0
    return result


def gradescope_json(result: SubmissionResult) -> dict:
    tests = []
    for t in result.tests:
        output = t.output
        if t.hidden and t.status != "passed":
            output = "hidden test failed"
        tests.append({
            "name": f"{t.lesson} task {t.task}: {t.nodeid.split('::')[-1]}",
            "number": t.task,
            "score": t.score,
            "max_score": t.max_points,
            "status": {"passed": "passed", "skipped": "skipped"}.get(t.status, "failed"),
            "output": output[:4000],
            "visibility": "after_published" if t.hidden else "visible",
        })  # fmt: skip
    out = {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "execution_time": round(result.seconds, 2),
        "visibility": "visible",
        "tests": tests,
    }
    if result.errors:
        out["output"] = "\n".join(result.errors)
    return out


def _task_columns(results: list[SubmissionResult]) -> list[tuple[str, str]]:
    cols = {(t.lesson, t.task) for r in results for t in r.tests}
    return sorted(cols, key=lambda c: (c[0], tuple(int(p) for p in c[1].split(".") if p.isdigit())))


def write_gradebook(results: list[SubmissionResult], path: Path, columns) -> None:
    rows = sorted(results, key=lambda r: r.name)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", *[f"{lesson} {task}" for lesson, task in columns], "total",
                    "max"])  # fmt: skip
        for r in rows:
            by = {}
            for t in r.tests:
                by[(t.lesson, t.task)] = by.get((t.lesson, t.task), 0.0) + t.score
            total = sum(t.score for t in r.tests)
            top = sum(t.max_points for t in r.tests)
            w.writerow([r.name, *[f"{by.get(c, 0.0):g}" for c in columns], f"{total:g}",
                        f"{top:g}"])  # fmt: skip
    tmp.replace(path)


def grade(submissions: list[Path], out: Path, *, course: Path, lessons: list[str] | None = None,
          hidden: Path | None = None, timeout: float = 120.0, jobs: int = 1,
          memory_mb: int = 6144, echo=print) -> list[SubmissionResult]:  # fmt: skip
    """Grade every submission; see the module docstring."""
    if hidden is not None and not hidden.is_dir():
        raise GradeError(f"--hidden {hidden}: no such folder")
    missing = [str(s) for s in submissions if not s.exists()]
    if missing:
        raise GradeError(f"no such submission: {', '.join(missing)}")
    names = [safe_name(s) for s in submissions]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GradeError(f"two submissions share the name {', '.join(dupes)}; rename one")
    specs = read_lessons(course, lessons, hidden)
    guard = CourseGuard(package_fingerprint(course, hidden), out / "_modified")
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, SubmissionResult] = {}
    lock = threading.Lock()

    def publish(res: SubmissionResult) -> None:
        folder = out / res.name
        folder.mkdir(exist_ok=True)
        data = gradescope_json(res)
        (folder / "results.json").write_text(json.dumps(data, indent=2))
        with lock:
            done[res.name] = res
            write_gradebook(list(done.values()), out / "gradebook.csv",
                            _task_columns(list(done.values())))  # fmt: skip
            echo(f"graded {res.name}: {data['score']:g}/{data['max_score']:g} "
                 f"({res.seconds:.0f} s){' - ' + res.errors[0] if res.errors else ''}")

    exclusive = jobs <= 1

    def one(path: Path) -> SubmissionResult:
        res = grade_submission(path, specs, timeout=timeout, memory_mb=memory_mb, guard=guard,
                               exclusive=exclusive)  # fmt: skip
        if not any(s == res.name for s, _ in guard.suspects):
            publish(res)
        return res

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = {r.name: r for r in pool.map(one, submissions)}
    # Course files changed while several submissions were in flight: grade those again, one
    # at a time, so the change is pinned on the submission that made it.
    by_name = {safe_name(p): p for p in submissions}
    for name in sorted({s for s, _ in guard.suspects}):
        lessons_again = {les for s, les in guard.suspects if s == name}
        again = grade_submission(by_name[name], [sp for sp in specs if sp.name in lessons_again],
                                 timeout=timeout, memory_mb=memory_mb, guard=guard,
                                 exclusive=True)  # fmt: skip
        res = results[name]
        res.tests = [t for t in res.tests if t.lesson not in lessons_again] + again.tests
        res.errors += again.errors
        res.seconds += again.seconds
        publish(res)
    return [results[safe_name(p)] for p in submissions]


def summary_table(results: list[SubmissionResult]) -> str:
    cols = _task_columns(results)
    lessons = sorted({c[0] for c in cols})
    width = max([len(r.name) for r in results] + [10])
    lines = [f"{'submission':<{width}}  " + "  ".join(f"{les:>18}" for les in lessons)
             + f"  {'total':>10}"]  # fmt: skip
    for r in sorted(results, key=lambda r: r.name):
        cells = []
        for les in lessons:
            got = sum(t.score for t in r.tests if t.lesson == les)
            top = sum(t.max_points for t in r.tests if t.lesson == les)
            cells.append(f"{f'{got:g}/{top:g}':>18}")
        total = f"{sum(t.score for t in r.tests):g}/{sum(t.max_points for t in r.tests):g}"
        lines.append(f"{r.name:<{width}}  " + "  ".join(cells) + f"  {total:>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the learner's release
RELEASE_ITEMS = ("alexnet_course", "lessons", "docs", "README.md", "pyproject.toml", "Makefile",
                 "mkdocs.yml", ".gitignore")  # fmt: skip


def release(course: Path, out: Path) -> list[str]:
    """Write the learner's copy of the course to ``out``: everything but the solutions and the
    project's own tests, with every lesson's learner files regenerated as stubs.

    Returns:
        The lesson files written as stubs.
    """
    from alexnet_course.grading.stubs import generate

    if out.exists() and any(out.iterdir()):
        raise GradeError(f"{out} exists and is not empty; choose a new folder")
    if not (course / "solutions").is_dir():
        raise GradeError(f"{course} has no solutions/: release from the instructor's course")
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".benchmarks")
    for name in RELEASE_ITEMS:
        src = course / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, out / name)
    generate(course / "solutions", out / "lessons")
    stubs = sorted(str(p.relative_to(out)) for p in (out / "lessons").rglob("*.py")
                   if not p.name.startswith("test_"))  # fmt: skip
    from alexnet_course.grading.stubs import BEGIN

    leaks = [str(p.relative_to(out)) for p in (out / "lessons").rglob("*.py")
             if any(BEGIN.match(line) for line in p.read_text(errors="replace").splitlines())]
    if leaks:
        shutil.rmtree(out)
        raise GradeError(f"release aborted: solution fences found in {', '.join(leaks)}")
    return stubs
