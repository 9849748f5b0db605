"""One lesson of one submission: the trusted test process, its sandboxed workers, the caps.

The test process (pytest over the pristine tests, the grader's uid) decides every verdict
and writes each one to an outcomes file only it can write (:func:`grade_lesson`). Learner
code runs only in the workers it starts (:mod:`.remote`), each over a folder holding the
workers' view of the tests (:mod:`.views`) and the learner's files, under the run's sandbox
tier (:mod:`.sandbox`) and caps (:mod:`.confine`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_course.grading import confine, remote, sandbox
from alexnet_course.grading.plugin import CAPS_ENV, HIDDEN_PREFIX, read_outcomes
from alexnet_course.grading.results import TestResult
from alexnet_course.grading.views import worker_view

MAX_LEARNER_FILE = 16 * 2**20


@dataclass
class LessonSpec:
    """What the instructor's course says a lesson is, read before any learner code runs."""

    name: str
    learner_files: list[str]
    tests: dict[str, bytes]  # file name -> content (pristine, kept in memory)
    graded: list[dict] = field(default_factory=list)  # the trusted test list (collect)


@dataclass
class RunContext:
    """What every lesson run of a class shares; made once by :func:`.grader.grade`."""

    tier: sandbox.Tier
    limits: sandbox.Limits
    timeout: float
    load_timeout: float
    library: Path  # the worker's library copy
    private: Path  # the grader's own files (0700)
    work: Path  # the workers' folders (0711; each one 0700, its uid's)
    stop: threading.Event = field(default_factory=threading.Event)
    budgets: dict[str, float] = field(default_factory=dict)  # lesson -> seconds, 0: none
    draw_seed: int = 0  # the drawn fixtures' seed: the same for every submission of the run


@dataclass
class Slot:
    """One concurrent submission's place: its two pool uids (visible and hidden workers,
    ``None`` when the tier does not switch uids) and its cgroups, if any."""

    index: int
    uids: tuple = (None, None)
    cgroups: confine.Cgroups | None = None

    @property
    def uid_set(self) -> set[int]:
        return {u for u in self.uids if u is not None}

    def clean(self) -> None:
        """Kill every process of this slot and remove what its uids left behind."""
        if self.cgroups is not None:
            self.cgroups.remove()
            self.cgroups = None
        confine.kill_uids(self.uid_set)
        confine.remove_files_of(self.uid_set)


def pytest_env(worker_spec: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg"})
    env.pop(remote.WORKER_ENV, None)
    if worker_spec is not None:
        env[remote.WORKER_ENV] = json.dumps(worker_spec)
    return env


def pytest_cmd(workdir: Path, rootdir: Path, *args: str) -> list[str]:
    """pytest in a fresh interpreter, with an empty settings file of the grader's own (no
    settings of anyone else's apply) and without the cache plugin."""
    (workdir / "grader.ini").write_text("[pytest]\n")
    return [sys.executable, "-s", "-m", "pytest", "-c", str(workdir / "grader.ini"), "--rootdir",
            str(rootdir), "-p", "no:cacheprovider", *args]  # fmt: skip


def write_tests(spec: LessonSpec, folder: Path, *, hidden: bool | None = None,
                view: bool = False) -> list[str]:  # fmt: skip
    """The pristine tests of ``spec`` into ``folder`` (only the hidden or only the visible
    ones when ``hidden`` says so); with ``view``, the workers' view of each."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, content in spec.tests.items():
        if hidden is None or name.startswith(HIDDEN_PREFIX) == hidden:
            if view:
                (folder / name).write_text(worker_view(content.decode(), name)[0])
            else:
                (folder / name).write_bytes(content)
            names.append(name)
    return names


def result_of(spec: LessonSpec, t: dict, status: str, output: str) -> TestResult:
    if t.get("gpu"):
        status, output = "skipped", "not run here (needs CUDA)"
    return TestResult(t["nodeid"], spec.name, t["task"], float(t["points"]), bool(t["hidden"]),
                      status, output)  # fmt: skip


def failed_all(spec: LessonSpec, why: str) -> list[TestResult]:
    return [result_of(spec, t, "failed", why) for t in spec.graded]


def _worker_folder(ctx: RunContext, spec: LessonSpec, uid: int | None) -> Path:
    """A new folder for one worker: 0700, its pool uid's where the tier switches uids."""
    outer = ctx.work / secrets.token_hex(8)
    outer.mkdir(mode=0o711)
    folder = outer / spec.name
    folder.mkdir(mode=0o700)
    (folder / ".home").mkdir(mode=0o700)
    return folder


def _hand_over(folder: Path, uid: int | None) -> None:
    if uid is None:
        return
    for p in [folder, *folder.rglob("*")]:
        os.chown(p, uid, uid, follow_symlinks=False)


def _copy_learner_files(spec: LessonSpec, src: Path, dest: Path) -> list[str]:
    """Copy ONLY the learner files (regular files, at most 16 MB) out of the intake copy."""
    copied = []
    for name in spec.learner_files:
        f = src / name
        if f.is_file() and not f.is_symlink() and f.stat().st_size <= MAX_LEARNER_FILE:
            shutil.copyfile(f, dest / name)
            copied.append(name)
    return copied


def grade_lesson(spec: LessonSpec, lessons_root: Path | None, ctx: RunContext, slot: Slot,
                 workdir: Path) -> tuple[list[TestResult], list[str]]:  # fmt: skip
    """Every graded test of one lesson for one submission; returns the results and the
    caps' events (a memory or disk cap reached)."""
    src = lessons_root / spec.name if lessons_root is not None else None
    if src is None or not src.is_dir() or src.is_symlink():
        return failed_all(spec, f"no lessons/{spec.name}/ folder in the submission"), []
    workdir.mkdir(parents=True, mode=0o700)
    write_tests(spec, workdir / "tests" / spec.name)
    workers: dict[str, list[str]] = {}
    folders: list[Path] = []
    copied: list[str] = []
    for hidden in (False, True):
        if not any(n.startswith(HIDDEN_PREFIX) == hidden for n in spec.tests):
            continue
        uid = slot.uids[1 if hidden else 0]
        folder = _worker_folder(ctx, spec, uid)
        folders.append(folder)
        names = write_tests(spec, folder, hidden=hidden, view=True)
        copied = _copy_learner_files(spec, src, folder)
        _hand_over(folder, uid)
        argv = sandbox.worker_command(folder, ctx.library, ctx.tier, uid=uid, limits=ctx.limits,
                                      cgroups=slot.cgroups.procs_files if slot.cgroups else [],
                                      files=copied)  # fmt: skip
        workers.update({n: argv for n in names})
    if not copied:
        return failed_all(spec, f"none of the learner files ({', '.join(spec.learner_files)}) "
                                f"is in lessons/{spec.name}/ of the submission"), []  # fmt: skip
    budget = ctx.budgets.get(spec.name, 0.0)
    outcomes_file = workdir / "outcomes.jsonl"
    selected = [t["nodeid"] for t in spec.graded]
    cmd = pytest_cmd(workdir, workdir / "tests", "-q", "--no-header", "--task-timeout",
                     str(ctx.timeout), "--load-timeout", str(ctx.load_timeout),
                     "--lesson-budget", str(budget), "--outcomes-json", str(outcomes_file),
                     "--draw-seed", str(ctx.draw_seed),
                     "--benchmark-disable-gc", "--tb=short", *selected)  # fmt: skip
    wall = (budget + max(ctx.timeout, 60) if budget
            else ctx.timeout * (len(spec.graded) + 2) + ctx.load_timeout + 120)  # fmt: skip
    reason, events = "", []
    ooms = slot.cgroups.oom_kills() if slot.cgroups else 0
    log_path = workdir / "pytest-output.txt"
    env = pytest_env(workers)
    disk_roots = [Path(r) for r in confine.WRITABLE] + folders
    if ctx.tier.name == "uid":
        env[CAPS_ENV] = json.dumps({"uids": sorted(slot.uid_set), "roots": list(map(str, disk_roots)),
                                    "disk_bytes": ctx.limits.disk_mb * 2**20})  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=workdir / "tests", env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                preexec_fn=sandbox.test_process_limits(ctx.limits))  # fmt: skip

        def who() -> list[int]:
            if slot.uid_set:
                return confine.processes_of(slot.uid_set)
            return [p for p in confine.descendants(proc.pid)]

        watch_memory = slot.cgroups is None
        dog = confine.Watchdog(
            who, ctx.limits.memory_mb * 2**20 if watch_memory else 0,
            ctx.limits.disk_mb * 2**20 if ctx.tier.name == "uid" else 0,
            slot.uid_set, disk_roots)  # fmt: skip
        code = None
        with dog:
            end = time.monotonic() + wall
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if ctx.stop.is_set():
                    reason = "not run: grading was stopped"
                    break
                if time.monotonic() > end:
                    reason = f"the lesson's tests ran past {wall:.0f} s and were stopped"
                    break
        learners = who()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        confine.kill_pids(learners)
        confine.kill_uids(slot.uid_set)
        events = list(dog.events)
        if slot.cgroups and slot.cgroups.oom_kills() > ooms:
            events.append(f"the kernel stopped {slot.cgroups.oom_kills() - ooms} of the "
                          "submission's processes: together they reached its memory cap of "
                          f"{ctx.limits.memory_mb} MB (tmpfs files count too)")  # fmt: skip
    outcomes = {o["nodeid"]: o for o in read_outcomes(outcomes_file)}
    tail = log_path.read_text(errors="replace")[-1500:]
    why_missing = reason or f"not run: the test process ended early (exit {code})\n{tail}"
    note = ("\n" + "\n".join(events)) if events else ""
    results = []
    for t in spec.graded:
        o = outcomes.get(t["nodeid"])
        if o is None:
            results.append(result_of(spec, t, "failed", why_missing + note))
            continue
        status = o["status"] if o["status"] in ("passed", "failed", "not started") else "failed"
        output = "" if status == "passed" else str(o["output"]) + note
        results.append(result_of(spec, t, status, output))
    for folder in folders:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return results, events
