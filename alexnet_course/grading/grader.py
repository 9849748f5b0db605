"""``alexnet-course grade``: grade a class of submissions into a gradebook that learner code
cannot forge.

The trust boundary (docs/instructors.md has the threat model):

* **Trusted collection.** The graded tests, their tasks and their points are read from the
  instructor's pristine test files by a pytest process that never imports learner code
  (:func:`collect`). A submission's maximum is that list's sum, whatever happens later.
* **Intake.** Each submission, folder or zip, becomes a private copy first
  (:mod:`.intake`): links refused at any depth, every zip defect that submission's own error
  row; the class run always finishes.
* **The reference first.** Where the course has its solutions, they are graded first, in
  the same sandbox: every test must pass on them (a test that cannot, such as a hidden test
  written against a learner module in a way the sandbox cannot serve, stops the grader
  before any submission runs), and their time sets each submission's budget per lesson.
* **No verdict where learner code ran.** For each submission and lesson, the tests run in a
  fresh pytest process that holds no learner code (:mod:`.lesson_run`). Each test's observe
  half runs in a worker in the run's sandbox tier (:mod:`.sandbox`: bubblewrap, a pool uid,
  or none when asked for) and comes back as data; the checks, the tolerances and the points
  are decided in the test process. Hidden tests get a worker of their own.
* **Outputs.** Only the grader writes ``--out``: ``OUT/<submission>/results.json``
  (Gradescope's format) and ``OUT/gradebook.csv``, each after the submission's processes have
  all ended; both record the sandbox tier. A test that could not run scores 0 of its points
  with the reason; never 0/0. Stopped by SIGINT or SIGTERM, the grader kills its workers and
  removes its scratch folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.course import LESSON_DIR, learner_files
from alexnet_course.grading import confine, intake, sandbox
from alexnet_course.grading.lesson_run import (
    LessonSpec,
    RunContext,
    Slot,
    failed_all,
    grade_lesson,
    pytest_cmd,
    pytest_env,
    write_tests,
)
from alexnet_course.grading.plugin import HIDDEN_PREFIX
from alexnet_course.grading.results import (
    SubmissionResult,
    TestResult,
    gradescope_json,
    summary_table,
    write_gradebook,
)

__all__ = ["GradeError", "LessonSpec", "SubmissionResult", "TestResult", "grade",
           "summary_table", "read_lessons", "collect", "find_lessons_root"]  # fmt: skip
RESERVED = {"gradebook.csv", "gradebook.csv.tmp", "summary.txt"}  # names of --out's own files
BUDGET_FACTOR = 5.0


class GradeError(CourseError):
    """The grading command was given something it cannot use."""


class GradeInterrupted(GradeError):
    """SIGINT or SIGTERM stopped the grader; its workers and scratch folder are gone."""


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


def collect(spec: LessonSpec, workdir: Path) -> list[dict]:
    """The trusted test list of one lesson: pytest's collection of the pristine tests, in a
    process where learner modules cannot load (there are no learner files beside them)."""
    run = workdir / "collect"
    write_tests(spec, run / spec.name)
    listing = run / "collected.json"
    cmd = pytest_cmd(run, run, "--collect-only", "-q", "--collect-json", str(listing), spec.name)
    proc = subprocess.run(cmd, cwd=run, env=pytest_env(None), capture_output=True, text=True,
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
    """A private copy of a submission folder or zip (:func:`.intake.take_in`)."""
    try:
        return intake.take_in(submission, dest)
    except intake.IntakeError as e:
        raise GradeError(str(e)) from None


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
    raise GradeError(f"{folder.name}: no lessons/NN_name/ folder found in the submission")


def grade_submission(path: Path, name: str, specs: list[LessonSpec], ctx: RunContext,
                     slot: Slot) -> SubmissionResult:  # fmt: skip
    """Grade every lesson of one submission from its private copy. Anything that goes wrong
    with this submission is its own error row; it never stops the class."""
    result = SubmissionResult(name, source=str(path), sandbox=ctx.tier.name)
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.private))
    try:
        lessons_root = None
        try:
            copy = intake.take_in(path, tmp / "submission")
            lessons_root = find_lessons_root(copy)
        except (intake.IntakeError, GradeError) as e:
            result.errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - a defect of this submission, never the class's
            result.errors.append(f"{path}: could not be read ({type(e).__name__}: {e})")
        if slot.uid_set or ctx.tier.name == "bwrap":
            made = confine.Cgroups.make(f"alexnet-course-{os.getpid()}-{slot.index}-"
                                        f"{int(t0 * 1000) % 10**9}", ctx.limits.memory_mb,
                                        ctx.limits.processes)  # fmt: skip
            slot.cgroups = made
        for spec in specs:
            if ctx.stop.is_set():
                result.tests += failed_all(spec, "not run: grading was stopped")
                continue
            if lessons_root is None:
                result.tests += failed_all(spec, result.errors[0])
                continue
            try:
                tests, events = grade_lesson(spec, lessons_root, ctx, slot,
                                             tmp / "lessons" / spec.name)  # fmt: skip
            except Exception as e:  # noqa: BLE001
                tests, events = failed_all(spec, f"could not grade {spec.name}: "
                                                 f"{type(e).__name__}: {e}"), []  # fmt: skip
            result.tests += tests
            result.errors += events
    finally:
        slot.clean()
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.time() - t0
    return result


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


# ---------------------------------------------------------------- the class
def _check_private(tier: sandbox.Tier, paths: list[Path]) -> None:
    """In the uid tier learner code sees the file system as its uid: refuse to start while
    that uid could read the solutions, hidden tests, --out or another submission."""
    if tier.name != "uid":
        return
    seen = sandbox.readable_by(tier.uids[0], [p for p in paths if p.exists()])
    if seen:
        raise GradeError(f"--sandbox uid: learner code would run as uid {tier.uids[0]}, which "
                         f"can read {seen[0]}; make it private first (chmod o-rwx on it or on "
                         "a folder above it)")  # fmt: skip


def _reference(course: Path, specs: list[LessonSpec], dest: Path) -> Path | None:
    """The course's solutions laid out as a submission, or ``None`` without them."""
    root = course / "solutions"
    if not all((root / s.name).is_dir() for s in specs):
        return None
    for spec in specs:
        (dest / "lessons" / spec.name).mkdir(parents=True)
        for f in spec.learner_files:
            if (root / spec.name / f).is_file():
                shutil.copyfile(root / spec.name / f, dest / "lessons" / spec.name / f)
    return dest


def _calibrate(ref: Path, specs: list[LessonSpec], ctx: RunContext, slot: Slot, jobs: int,
               factor: float, echo) -> None:  # fmt: skip
    """Grade the reference solution; stop unless it scores full marks; set the budgets."""
    t_lessons: dict[str, float] = {}
    failures = []
    for spec in specs:
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix="reference-", dir=ctx.private))
        try:
            tests, _ = grade_lesson(spec, ref / "lessons", ctx, slot, tmp / spec.name)
        finally:
            slot.clean()
            shutil.rmtree(tmp, ignore_errors=True)
        t_lessons[spec.name] = time.monotonic() - t0
        failures += [t for t in tests if t.status not in ("passed", "skipped")]
    if ctx.stop.is_set():
        raise GradeInterrupted("grading was stopped")
    if failures:
        lines = [f"  {t.nodeid}{' (hidden)' if t.hidden else ''}: "
                 f"{(t.output.strip().splitlines() or ['failed'])[-1][:400]}" for t in failures[:5]]
        raise GradeError("the course's tests fail on its own reference solution, so no "
                         "submission was graded (a hidden test must call learner code through "
                         "an observe half, or with data in and out: docs/instructors.md, "
                         "'Writing a hidden test'):\n" + "\n".join(lines))  # fmt: skip
    share = max(1.0, jobs / (os.cpu_count() or 1))
    for spec in specs:
        if not ctx.budgets.get(spec.name):
            ctx.budgets[spec.name] = round(factor * share * t_lessons[spec.name] + 60, 1)
        echo(f"reference solution of {spec.name}: full marks in {t_lessons[spec.name]:.0f} s; "
             f"each submission gets {ctx.budgets[spec.name]:.0f} s for it")  # fmt: skip


def grade(submissions: list[Path], out: Path, *, course: Path, lessons: list[str] | None = None,
          hidden: Path | None = None, timeout: float = 120.0, jobs: int = 1,
          memory_mb: int = 6144, disk_mb: int = 1024, processes: int = 256,
          sandbox_tier: str = "auto", uid_pool: str | None = None,
          lesson_budget: float | None = None, budget_factor: float = BUDGET_FACTOR,
          load_timeout: float | None = None, tasks: list[str] | None = None,
          calibrate: bool = True, draw_seed: int | None = None,
          echo=print) -> list[SubmissionResult]:  # fmt: skip
    """Grade every submission; see the module docstring.

    Args:
        memory_mb: each submission's memory cap, all its processes together.
        disk_mb: what each submission may write, all its processes together.
        processes: processes and threads each submission may run at once.
        sandbox_tier: ``auto``, ``bwrap``, ``uid`` or ``none`` (:func:`.sandbox.choose`).
        lesson_budget: seconds each submission may spend on each lesson; ``None``: measured
            (``budget_factor`` times the reference solution's time, plus 60 s) where the
            course has its solutions, else no budget beyond the per-test limits.
        tasks: grade only these task ids (``["3.11"]``).
        calibrate: grade the reference solution first (where it exists).
        draw_seed: the seed of the drawn (Hypothesis) fixtures, the same for every
            submission (and the reference) of this run; ``None``: a fresh random one, printed.
    """
    if hidden is not None and not hidden.is_dir():
        raise GradeError(f"--hidden {hidden}: no such folder")
    missing = [str(s) for s in submissions if not os.path.lexists(s)]
    if missing:
        raise GradeError(f"no such submission: {', '.join(missing)}")
    out = out.resolve()
    for s in submissions:
        if out == s.resolve() or out.is_relative_to(s.resolve()):
            raise GradeError(f"--out {out} is inside the submission {s}; choose another folder")
    jobs = max(1, jobs)
    specs = read_lessons(course, lessons, hidden)
    tier = sandbox.choose(sandbox_tier, sandbox.pool(uid_pool))
    try:
        if tier.uids and len(tier.uids) < 2 * (jobs + 1):
            raise GradeError(f"--uid-pool has {len(tier.uids)} uids; --jobs {jobs} needs "
                             f"{2 * (jobs + 1)} (two per submission graded at once)")  # fmt: skip
        names = output_names(submissions, echo)
        if not out.exists():
            out.mkdir(parents=True, mode=0o700)
        _check_private(tier, [course / "solutions", *([hidden] if hidden else []), out,
                              *[Path(s) for s in submissions]])  # fmt: skip
        return _grade_class(submissions, names, out, specs, tier, course=course,
                            timeout=timeout, jobs=jobs,
                            limits=sandbox.Limits(memory_mb=memory_mb, disk_mb=disk_mb,
                                                  processes=processes),
                            lesson_budget=lesson_budget, budget_factor=budget_factor,
                            load_timeout=load_timeout, tasks=tasks, calibrate=calibrate,
                            draw_seed=secrets.randbelow(2**31) if draw_seed is None else draw_seed,
                            echo=echo)  # fmt: skip
    finally:
        sandbox.release(tier.uids)


def _grade_class(submissions, names, out, specs, tier, *, course, timeout, jobs, limits,
                 lesson_budget, budget_factor, load_timeout, tasks, calibrate, draw_seed,
                 echo):  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="alexnet-course-grade-"))
    os.chmod(scratch, 0o711)  # pool uids may pass through to their own folders, never list
    ctx = RunContext(tier=tier, limits=limits, timeout=timeout,
                     load_timeout=load_timeout or min(60.0, 0.8 * timeout),
                     library=sandbox.worker_library(scratch / "library"),
                     private=scratch / "private", work=scratch / "work",
                     draw_seed=draw_seed)  # fmt: skip
    ctx.private.mkdir(mode=0o700)
    ctx.work.mkdir(mode=0o711)
    slots = [Slot(i, (tier.uids[2 * i], tier.uids[2 * i + 1]) if tier.uids else (None, None))
             for i in range(jobs + 1)]  # fmt: skip
    if lesson_budget:
        ctx.budgets = {s.name: float(lesson_budget) for s in specs}
    previous = _trap_signals(ctx)
    try:
        for spec in specs:  # the trusted test list, before any learner code runs
            spec.graded = collect(spec, ctx.private / f"collect-{spec.name}")
            if tasks:
                spec.graded = [t for t in spec.graded if t["task"] in set(tasks)]
        specs = [s for s in specs if s.graded]
        if not specs:
            raise GradeError(f"no graded test of task(s) {', '.join(tasks or [])} in the lessons")
        echo(f"sandbox: {tier.name} ({tier.why})")
        echo(f"drawn fixtures: seed {draw_seed}, the same for every submission "
             f"(--draw-seed {draw_seed} repeats them)")
        ref = _reference(course, specs, ctx.private / "reference") if calibrate else None
        if ref is not None:
            _calibrate(ref, specs, ctx, slots[-1], jobs, budget_factor, echo)
        done: dict[str, SubmissionResult] = {}
        lock = threading.Lock()
        free = list(slots[:jobs])

        def one(item: tuple[Path, str]) -> SubmissionResult:
            path, name = item
            with lock:
                slot = free.pop()
            try:
                res = grade_submission(path, name, specs, ctx, slot)
            finally:
                with lock:
                    free.append(slot)
            if ctx.stop.is_set():
                return res
            with lock:  # every process of this submission has ended: publish
                folder = out / name
                folder.mkdir(exist_ok=True)
                data = gradescope_json(res)
                tmp = folder / "results.json.tmp"
                tmp.write_text(json.dumps(data, indent=2))
                tmp.replace(folder / "results.json")
                done[name] = res
                write_gradebook(list(done.values()), out / "gradebook.csv")
                echo(f"graded {name}: {res.score:g}/{res.max_score:g} "
                     f"({res.seconds:.0f} s){' - ' + res.errors[0] if res.errors else ''}")
            return res

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one, zip(submissions, names)))
        if ctx.stop.is_set():
            raise GradeInterrupted("grading was stopped")
    except GradeInterrupted:
        raise GradeInterrupted(f"grading was stopped by a signal: {len(_published(out))} "
                               f"submission(s) were graded before it, in {out}; the workers "
                               "and the scratch folder are gone") from None  # fmt: skip
    finally:
        ctx.stop.set()
        for slot in slots:
            slot.clean()
        shutil.rmtree(scratch, ignore_errors=True)
        _restore_signals(previous)
    return results


def _published(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/results.json"))


def _trap_signals(ctx: RunContext) -> dict:
    """SIGINT and SIGTERM stop the class run cleanly (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum, frame):
        if ctx.stop.is_set():  # already stopping: let the clean-up finish
            return
        ctx.stop.set()
        raise GradeInterrupted(signal.Signals(signum).name)

    return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler)
