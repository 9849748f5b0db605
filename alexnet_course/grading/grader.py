"""``alexnet-course grade``: grade a class of submissions into a gradebook that learner code
cannot forge.

The trust boundary (docs/instructors.md has the threat model):

* **Trusted collection.** The graded tests, their tasks and their points are read from the
  instructor's pristine test files by a pytest process that never imports learner code
  (:func:`collect`). A submission's maximum is that list's sum, whatever happens later.
* **No verdict where learner code ran.** For each submission and lesson, the tests run in a
  fresh pytest process that holds no learner code: the learner modules refuse to load there.
  Each test's observe half runs in a worker (:mod:`.remote`), in a bubblewrap sandbox
  (:mod:`.sandbox`), and comes back as data (JSON + npz, never pickle); the checks, the
  tolerances and the points are decided in the test process. Hidden tests get a worker of
  their own, which alone sees them.
* **Outputs.** Only the grader writes ``--out``: ``OUT/<submission>/results.json``
  (Gradescope's format) and ``OUT/gradebook.csv``, each after the submission's processes have
  all ended. A test that could not run (a collection error, a crash) scores 0 of its points
  with the reason; never 0/0.
"""

from __future__ import annotations

import csv
import json
import os
import re
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
from alexnet_course.grading import remote, sandbox
from alexnet_course.grading.plugin import HIDDEN_PREFIX
from alexnet_course.grading.stubs import LESSON_DIR, learner_files

MAX_ZIP_BYTES = 500 * 2**20
RESERVED = {"gradebook.csv", "gradebook.csv.tmp", "summary.txt"}  # names of --out's own files


class GradeError(CourseError):
    """The grading command was given something it cannot use."""


@dataclass
class LessonSpec:
    """What the instructor's course says a lesson is, read before any learner code runs."""

    name: str
    learner_files: list[str]
    tests: dict[str, bytes]  # file name -> content (pristine, kept in memory)
    graded: list[dict] = field(default_factory=list)  # the trusted test list (see collect)


@dataclass
class TestResult:
    nodeid: str
    lesson: str
    task: str
    points: float
    hidden: bool
    status: str = "failed"  # passed | failed | not started | skipped (a GPU test, no GPU)
    output: str = ""

    @property
    def score(self) -> float:
        return self.points if self.status == "passed" else 0.0

    @property
    def max_points(self) -> float:
        """A GPU test on a machine without one is not run and counts for nothing; which
        tests those are is decided by the trusted collection, not by a test process."""
        return 0.0 if self.status == "skipped" else self.points


@dataclass
class SubmissionResult:
    name: str
    source: str = ""
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


def _write_tests(spec: LessonSpec, folder: Path, *, hidden: bool | None = None) -> None:
    """The pristine tests of ``spec`` into ``folder`` (only the hidden or only the visible
    ones when ``hidden`` says so)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in spec.tests.items():
        if hidden is None or name.startswith(HIDDEN_PREFIX) == hidden:
            (folder / name).write_bytes(content)


def _pytest_env(worker_spec: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    env.update({remote.WORKER_ENV: json.dumps(worker_spec), "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg"})  # fmt: skip
    return env


def _pytest_cmd(workdir: Path, rootdir: Path, *args: str) -> list[str]:
    """pytest in a fresh interpreter, with an empty settings file of the grader's own (no
    settings of anyone else's apply) and without the cache plugin."""
    (workdir / "grader.ini").write_text("[pytest]\n")
    return [sys.executable, "-s", "-m", "pytest", "-c", str(workdir / "grader.ini"), "--rootdir",
            str(rootdir), "-p", "no:cacheprovider", *args]  # fmt: skip


def collect(spec: LessonSpec, workdir: Path) -> list[dict]:
    """The trusted test list of one lesson: pytest's collection of the pristine tests, in a
    process where learner modules cannot load (there are no learner files beside them)."""
    run = workdir / "collect"
    _write_tests(spec, run / spec.name)
    listing = run / "collected.json"
    cmd = _pytest_cmd(run, run, "--collect-only", "-q", "--collect-json", str(listing), spec.name)
    proc = subprocess.run(cmd, cwd=run, env=_pytest_env({}), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if proc.returncode != 0 or not listing.is_file():
        raise GradeError(f"the course's own tests of {spec.name} do not collect (pytest exit "
                         f"{proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")  # fmt: skip
    graded = json.loads(listing.read_text())
    if not graded:
        raise GradeError(f"{spec.name}: no graded test (@pytest.mark.task) was collected")
    return graded


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
def _failed_all(spec: LessonSpec, why: str) -> list[TestResult]:
    return [_result(spec, t, "failed", why) for t in spec.graded]


def _result(spec: LessonSpec, t: dict, status: str, output: str) -> TestResult:
    if t.get("gpu"):
        status, output = "skipped", "not run here (needs CUDA)"
    return TestResult(t["nodeid"], spec.name, t["task"], float(t["points"]), bool(t["hidden"]),
                      status, output)  # fmt: skip


def _copy_learner_files(spec: LessonSpec, src: Path, dest: Path) -> list[str]:
    """Copy ONLY the learner files (regular files, not links) out of the submission."""
    copied = []
    for name in spec.learner_files:
        f = src / name
        if f.is_file() and not f.is_symlink() and f.stat().st_size <= 16 * 2**20:
            shutil.copyfile(f, dest / name)
            copied.append(name)
    return copied


def grade_lesson(spec: LessonSpec, lessons_root: Path | None, *, timeout: float,
                 limits: sandbox.Limits, workdir: Path, library: Path,
                 use_sandbox: bool = True) -> list[TestResult]:  # fmt: skip
    """Every graded test of one lesson for one submission; see the module docstring."""
    src = lessons_root / spec.name if lessons_root is not None else None
    if src is None or not src.is_dir() or src.is_symlink():
        return _failed_all(spec, f"no lessons/{spec.name}/ folder in the submission")
    trusted = workdir / "tests" / spec.name
    _write_tests(spec, trusted)
    workers: dict[str, list[str]] = {}
    copied: list[str] = []
    for hidden in (False, True):
        names = [n for n in spec.tests if n.startswith(HIDDEN_PREFIX) == hidden]
        if not names:
            continue
        folder = workdir / ("hidden" if hidden else "visible") / spec.name
        _write_tests(spec, folder, hidden=hidden)
        copied = _copy_learner_files(spec, src, folder)
        argv = sandbox.worker_command(folder, library, sandbox=use_sandbox)
        workers.update({n: argv for n in names})
    if not copied:
        return _failed_all(spec, f"none of the learner files ({', '.join(spec.learner_files)}) "
                                 f"is in lessons/{spec.name}/ of the submission")  # fmt: skip
    outcomes_file = workdir / "outcomes.json"
    cmd = _pytest_cmd(workdir, workdir / "tests", "-q", "--no-header", "--task-timeout",
                      str(timeout), "--outcomes-json", str(outcomes_file),
                      "--benchmark-disable-gc", spec.name)  # fmt: skip
    wall = timeout * (len(spec.graded) + 2) + 120
    log_path = workdir / "pytest-output.txt"
    reason = ""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir / "tests", env=_pytest_env(workers),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=sandbox.apply_limits(limits))  # fmt: skip
        try:
            code = proc.wait(timeout=wall)
        except subprocess.TimeoutExpired:
            code, reason = None, f"the lesson's tests ran past {wall:.0f} s and were stopped"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    outcomes = {}
    if outcomes_file.is_file():
        try:
            outcomes = {o["nodeid"]: o for o in json.loads(outcomes_file.read_text())}
        except (ValueError, KeyError, TypeError):
            outcomes = {}
    tail = log_path.read_text(errors="replace")[-1500:]
    why_missing = reason or f"not run: the test process ended early (exit {code})\n{tail}"
    results = []
    for t in spec.graded:
        o = outcomes.get(t["nodeid"])
        if o is None:
            results.append(_result(spec, t, "failed", why_missing))
            continue
        status = o["status"] if o["status"] in ("passed", "failed", "not started") else "failed"
        results.append(_result(spec, t, status, "" if status == "passed" else str(o["output"])))
    return results


# ---------------------------------------------------------------- whole submissions
def grade_submission(path: Path, name: str, specs: list[LessonSpec], *, timeout: float,
                     limits: sandbox.Limits, library: Path, use_sandbox: bool,
                     scratch: Path) -> SubmissionResult:  # fmt: skip
    """Grade every lesson of one submission, in a private folder under ``scratch``."""
    result = SubmissionResult(name, source=str(path))
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    try:
        try:
            lessons_root = find_lessons_root(unpack(path, tmp / "submission"))
        except (GradeError, OSError) as e:
            result.errors.append(str(e))
            lessons_root = None
        for spec in specs:
            if lessons_root is None:
                result.tests += _failed_all(spec, result.errors[0])
                continue
            result.tests += grade_lesson(spec, lessons_root, timeout=timeout, limits=limits,
                                         workdir=tmp / spec.name, library=library,
                                         use_sandbox=use_sandbox)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.time() - t0
    return result


def gradescope_json(result: SubmissionResult) -> dict:
    tests = []
    for t in result.tests:
        output = "" if t.hidden else t.output  # hidden tests: no source and no output
        tests.append({
            "name": f"{t.lesson} task {t.task}: {t.nodeid.split('::')[-1]}",
            "number": t.task,
            "score": t.score,
            "max_score": t.max_points,
            # Gradescope knows "passed" and "failed"; a GPU test not run here has neither
            **({} if t.status == "skipped" else {"status": "passed" if t.status == "passed"
                                                  else "failed"}),  # fmt: skip
            "output": output[:4000],
            "visibility": "after_published" if t.hidden else "visible",
        })  # fmt: skip
    out = {
        "score": sum(t["score"] for t in tests),
        "max_score": sum(t["max_score"] for t in tests),
        "execution_time": round(result.seconds, 2),
        "visibility": "visible",
        "stdout_visibility": "hidden",
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


def output_names(submissions: list[Path], echo=print) -> list[str]:
    """One output folder name per submission: ``safe_name``, renamed (with a line saying so)
    when it would collide with the grader's own files or another submission's name."""
    names, taken = [], set(RESERVED)
    for s in submissions:
        base = name = safe_name(s)
        n = 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}" if base.lower() not in RESERVED else f"{base}-submission"
            if name.lower() in taken:
                name = f"{base}-submission-{n}"
        if name != base:
            echo(f"note: submission {s} is graded as {name!r} ({base!r} is taken by "
                 f"{'an output of the grader' if base.lower() in RESERVED else 'another submission'})")
        taken.add(name.lower())
        names.append(name)
    return names


def grade(submissions: list[Path], out: Path, *, course: Path, lessons: list[str] | None = None,
          hidden: Path | None = None, timeout: float = 120.0, jobs: int = 1,
          memory_mb: int = 6144, use_sandbox: bool = True, echo=print) -> list[SubmissionResult]:  # fmt: skip
    """Grade every submission; see the module docstring."""
    if hidden is not None and not hidden.is_dir():
        raise GradeError(f"--hidden {hidden}: no such folder")
    missing = [str(s) for s in submissions if not s.exists()]
    if missing:
        raise GradeError(f"no such submission: {', '.join(missing)}")
    out = out.resolve()
    for s in submissions:
        if out == s.resolve() or out.is_relative_to(s.resolve()):
            raise GradeError(f"--out {out} is inside the submission {s}; choose another folder")
    if use_sandbox:
        sandbox.check_sandbox()
    names = output_names(submissions, echo)
    specs = read_lessons(course, lessons, hidden)
    scratch = Path(tempfile.mkdtemp(prefix="alexnet-course-grade-"))
    try:
        library = sandbox.worker_library(scratch / "library")
        for spec in specs:  # the trusted test list, before any learner code runs
            spec.graded = collect(spec, scratch / f"collect-{spec.name}")
        limits = sandbox.Limits(memory_mb=memory_mb, cpu_seconds=int(
            timeout * max(len(sp.graded) for sp in specs) * 4 + 600))  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        done: dict[str, SubmissionResult] = {}
        lock = threading.Lock()

        def one(item: tuple[Path, str]) -> SubmissionResult:
            path, name = item
            res = grade_submission(path, name, specs, timeout=timeout, limits=limits,
                                   library=library, use_sandbox=use_sandbox, scratch=scratch)  # fmt: skip
            with lock:  # every process of this submission has ended: publish
                folder = out / name
                folder.mkdir(exist_ok=True)
                data = gradescope_json(res)
                tmp = folder / "results.json.tmp"
                tmp.write_text(json.dumps(data, indent=2))
                tmp.replace(folder / "results.json")
                done[name] = res
                write_gradebook(list(done.values()), out / "gradebook.csv",
                                _task_columns(list(done.values())))  # fmt: skip
                echo(f"graded {name}: {data['score']:g}/{data['max_score']:g} "
                     f"({res.seconds:.0f} s){' - ' + res.errors[0] if res.errors else ''}")
            return res

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, zip(submissions, names)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


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
