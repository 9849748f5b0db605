"""The pytest plugin every lesson uses (registered through the ``pytest11`` entry point).

- ``@pytest.mark.task("3.2", points=2)`` makes a test graded; ``pytest -m task3_2`` runs one
  task (minitorch's style).
- ``--solutions`` runs the same tests against ``solutions/NN_name/`` (the learner files'
  reference) instead of the files beside the tests.
- A stub's ``NotImplementedError`` is reported as "not started", not as a crash.
- Each graded test has a time limit (``--task-timeout``, default 120 s, or the marker's
  ``timeout=``), so a learner's endless loop fails one test instead of hanging the run.
  Locally the limit is scaled by how busy the machine is (:mod:`.load`, measured before the
  first graded test), and a test that runs past it while the machine is busy is reported as
  "machine too busy to judge: rerun when it is quieter", listed and not counted, like a GPU
  test on a machine without one; so is a speed ratio the run's timing noise cannot judge.
  Under the class grader (and with ``--busy-machine decide``) every limit and bar applies
  as given, the same for every submission.
- At the end a score table per task and each lesson's total ("03_torch_scratch: 41/50").
- ``--results-json PATH`` writes Gradescope's results.json.
- Under ``alexnet-course grade`` (the environment names the workers) the tests run here but
  every call into learner code goes to a sandboxed worker (:mod:`.remote`), and the
  learner modules refuse to load in this process; ``--collect-json PATH`` writes the graded
  tests, tasks and points of a collection (the grader's trusted test list).

Kept light: importing it must not import torch or TensorFlow.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alexnet_course.course import LESSON_DIR, task_key
from alexnet_course.grading import draws, learner, load, remote
from alexnet_course.grading.results import NOT_COUNTED, SubmissionResult, gradescope_json
from alexnet_course.grading.results import TestResult as Outcome

DEFAULT_TIMEOUT = 120.0
MAX_OUTPUT = 4000


@dataclass
class Scoreboard:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def record(self, item: pytest.Item, report: pytest.TestReport) -> None:
        info = task_info(item)
        if info is None:
            return
        out = self.outcomes.get(item.nodeid)
        if out is None:
            out = self.outcomes[item.nodeid] = Outcome(
                item.nodeid, lesson_of(item), info["task"], info["points"], info["hidden"],
                status="passed",
            )  # fmt: skip
        if report.skipped and report.when in ("setup", "call") and out.status == "passed":
            # Only the course's own GPU skips and busy-machine verdicts are excused; a skip
            # from anywhere else (a learner calling pytest.skip, say) scores like a failure.
            gpu = item.get_closest_marker("gpu") is not None
            busy = getattr(report, "machine_busy", False)
            out.status = "busy" if busy else "skipped" if gpu else "failed"
            out.output = _skip_reason(report) if busy else _text(report) or "skipped"
        elif report.failed and out.status in ("passed", "skipped"):
            out.status = "not started" if getattr(report, "not_started", False) else "failed"
            out.output = _text(report)

    def by_task(self):
        groups: dict[tuple[str, str], list[Outcome]] = {}
        for o in self.outcomes.values():
            groups.setdefault((o.lesson, o.task), []).append(o)
        return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], task_key(kv[0][1]))))




def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _text(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "\n... (truncated)"


def task_info(item: pytest.Item) -> dict | None:
    m = item.get_closest_marker("task")
    if m is None:
        return None
    if not m.args:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.task needs a task id, e.g. '3.1'")
    return {
        "task": str(m.args[0]),
        "points": float(m.kwargs.get("points", 1)),
        "timeout": m.kwargs.get("timeout"),
        "hidden": bool(m.kwargs.get("hidden", False))
        or Path(str(item.path)).name.startswith(HIDDEN_PREFIX),
    }


def lesson_of(item: pytest.Item) -> str:
    for parent in Path(str(item.path)).resolve().parents:
        if LESSON_DIR.match(parent.name):
            return parent.name
    return Path(str(item.path)).parent.name


BOARD = pytest.StashKey[Scoreboard]()
HIDDEN_PREFIX = "test_hidden_"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("alexnet-course", "alexnet-course grading")
    g.addoption("--solutions", action="store_true",
                help="grade the reference solutions (solutions/NN_name/) instead of the "
                     "learner files beside the tests")  # fmt: skip
    g.addoption("--solutions-dir", default=None, metavar="DIR",
                help="with --solutions: the folder holding NN_name/ solution folders")
    g.addoption("--results-json", default=None, metavar="PATH",
                help="write Gradescope's results.json for the graded tests to PATH")
    g.addoption("--task-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                help=f"time limit per graded test in seconds (default {DEFAULT_TIMEOUT:g}; "
                     "0 turns it off)")  # fmt: skip
    g.addoption("--busy-machine", choices=load.MODES,
                default=os.environ.get(load.BUSY_ENV) or "excuse",
                help="when the machine is too busy to judge a time limit or a speed ratio: "
                     "'excuse' (the default: time limits grow with the load measured at the "
                     "start, and a test the load leaves undecided is listed, not counted) or "
                     "'decide' (every limit and bar as given; always so under the class "
                     f"grader). Default from ${load.BUSY_ENV}")  # fmt: skip
    g.addoption("--no-score", action="store_true", help="do not print the score table")
    g.addoption("--outcomes-json", default=None, metavar="PATH",
                help="append each graded test's node id, status and output to PATH as a JSON "
                     "line when the test ends (the grader)")
    g.addoption("--collect-json", default=None, metavar="PATH",
                help="write the graded tests (node id, task, points, hidden, gpu) to PATH")
    g.addoption("--load-timeout", type=float, default=60.0, metavar="S",
                help="graded by the class grader: seconds the learner files may take to "
                     "import in the worker (default 60)")  # fmt: skip
    g.addoption("--draw-seed", type=int, default=None, metavar="N",
                help="seed of the drawn (Hypothesis) fixtures; the class grader picks one per "
                     "run, the same for every submission (default: a fixed local seed)")  # fmt: skip
    g.addoption("--lesson-budget", type=float, default=0.0, metavar="S",
                help="graded by the class grader: seconds for all of the run's tests; a test "
                     "that would start later fails with the reason (default: no budget)")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "task(id, points=1, timeout=None, hidden=False): a graded test of task ID worth POINTS",
    )
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped with a reason without one")
    for line in NOT_THE_LEARNERS:
        config.addinivalue_line("filterwarnings", line)
    if config.getoption("--solutions"):
        if not config.getoption("--solutions-dir") and not _has_solutions(config):
            raise pytest.UsageError("--solutions: this copy of the course has no solutions/ "
                                    "(a learner's release): run the tests on your own files, "
                                    "without --solutions")  # fmt: skip
        learner.configure("solutions", config.getoption("--solutions-dir"))
    config.stash[BOARD] = Scoreboard()
    spec = os.environ.pop(remote.WORKER_ENV, None)
    graded = spec is not None or bool(config.getoption("--lesson-budget"))
    load.configure(excuse=config.getoption("--busy-machine") == "excuse" and not graded)
    draws.configure(config.getoption("--draw-seed"), graded=graded)
    if spec is not None:  # graded: learner code only in the workers, never here
        remote.configure_remote(json.loads(spec), config.getoption("--load-timeout"),
                                _cap_check(os.environ.pop(CAPS_ENV, None)))
        learner.seal()


def _has_solutions(config: pytest.Config) -> bool:
    """Whether a ``solutions/`` folder is where ``--solutions`` looks: beside the lessons
    named on the command line, at the rootdir, or at the course root."""
    from alexnet_course.course import course_root

    places = [config.rootpath, course_root()]
    for arg in config.args:
        path = Path(str(arg).split("::")[0]).resolve()
        places += list(path.parents)[:3]
    return any((p / "solutions").is_dir() for p in places)


CAPS_ENV = "ALEXNET_COURSE_CAPS"
# Warnings a graded run shows although the learner's code did nothing wrong: silenced, so a
# green run is quiet and a warning always means something to the learner.
NOT_THE_LEARNERS = (
    # Keras's model.fit defaults to shuffle=True and says it ignores it for a tf.data
    # Dataset (lesson 04's fit_keras: the datasets are the test's)
    "ignore:`shuffle=True` was passed, but will be ignored:UserWarning",
    # pytest-benchmark, when a speed test stops before timing anything (a stub, a failure)
    "ignore:Benchmark fixture was not used at all",
)


def _cap_check(spec: str | None):
    """The uid tier's disk cap, checked after every answer from a worker (the grader's
    watchdog checks it twice a second too)."""
    if not spec:
        return None
    caps = json.loads(spec)
    uids, roots, cap = set(caps["uids"]), [Path(r) for r in caps["roots"]], int(caps["disk_bytes"])

    def check() -> str | None:
        from alexnet_course.grading.confine import MAX_SCAN, files_of

        size, count, _ = files_of(uids, roots)
        if size > cap or count >= MAX_SCAN:
            return (f"the submission wrote {size >> 20} MB in {count} files, over its cap of "
                    f"{cap >> 20} MB: this answer was refused")  # fmt: skip
        return None

    return check


def pytest_unconfigure(config: pytest.Config) -> None:
    if remote.remote():
        remote.configure_remote(None)  # stops the workers


def pytest_collection_finish(session: pytest.Session) -> None:
    path = session.config.getoption("--collect-json")
    if not path:
        return
    tests = []
    for item in session.items:
        if (info := task_info(item)) is not None:
            tests.append({"nodeid": item.nodeid, "file": Path(str(item.path)).name,
                          "task": info["task"], "points": info["points"],
                          "hidden": info["hidden"], "gpu": _gpu_skipped(item),
                          "gpu_only": item.get_closest_marker("gpu") is not None})  # fmt: skip
    Path(path).write_text(json.dumps(tests, indent=1))


def _gpu_skipped(item: pytest.Item) -> bool:
    return item.get_closest_marker("gpu") is not None and not _cuda()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    registered: set[str] = set()
    for item in items:
        info = task_info(item)
        if info is not None:
            name = "task" + info["task"].replace(".", "_")
            if name not in registered:
                config.addinivalue_line("markers", f"{name}: the graded tests of task "
                                        f"{info['task']} (select with -m {name})")
                registered.add(name)
            item.add_marker(name)
        if item.get_closest_marker("gpu") is not None and not _cuda():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none found)"))


def _cuda() -> bool:
    """Whether torch sees a CUDA (or ROCm) GPU. Without a GPU driver's device files torch
    cannot see one either, so a lesson whose tests never import torch (and the grader's own
    tests) does not pay the ~1 s of importing it just to learn that."""
    gpu_files = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")  # NVIDIA's driver, ROCm's
    if (sys.platform.startswith("linux") and "torch" not in sys.modules
            and not any(os.path.exists(f) for f in gpu_files)):  # fmt: skip
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class TaskTimeout(Exception):
    """A graded test ran past its time limit."""


class BudgetSpent(Exception):
    """The class grader's time for the whole lesson ran out."""


def _budget_left(config: pytest.Config) -> float | None:
    budget = config.getoption("--lesson-budget")
    if not budget:
        return None
    return budget - (time.time() - config.stash[BOARD].started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    info = task_info(item)
    limit = item.config.getoption("--task-timeout")
    if info and info["timeout"] is not None:
        limit = float(info["timeout"])
    left = _budget_left(item.config) if info is not None else None
    budget = item.config.getoption("--lesson-budget")
    if left is not None and left <= 0:
        raise BudgetSpent(f"not run: this submission's time for the lesson ({budget:g} s, set "
                          "by the grader from the reference solution's time) ran out before "
                          "this test started")  # fmt: skip
    by_budget = left is not None and (not limit or left < limit)
    if by_budget:
        limit = left
    usable = (info is not None and limit and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())  # fmt: skip
    if not usable:
        return (yield)
    base = limit
    start = load.at_start() if load.excused() and not by_budget else None
    if start is not None:  # locally: the limit grows with the load measured at the start
        limit = load.scaled(base, start)
    ran = {"limit": limit, "extended": False}

    def on_alarm(signum, frame):
        if by_budget:
            raise BudgetSpent(f"stopped: this submission's time for the lesson ({budget:g} s, "
                              "set by the grader from the reference solution's time) ran out "
                              "during this test")  # fmt: skip
        if start is None:
            raise TaskTimeout(f"Task {info['task']}: this test ran longer than {base:g} s; "
                              "does your code loop forever or wait for input?")  # fmt: skip
        now = load.probe()
        if (now.busy or start.busy) and not ran["extended"]:  # one more window, as busy as now
            extra = load.scaled(base, now)
            ran.update(limit=ran["limit"] + extra, extended=True)
            signal.setitimer(signal.ITIMER_REAL, extra)
            return
        if now.busy or start.busy:
            raise load.MachineBusy(load.busy_message(
                f"Task {info['task']}: this test ran past its time limit of {ran['limit']:.0f} s "
                f"({base:g} s on a quiet machine, grown for the load) while the machine was "
                f"busy (at the start {start.describe()}; at the limit {now.describe()})."))  # fmt: skip
        raise TaskTimeout(f"Task {info['task']}: this test ran longer than {ran['limit']:g} s on "
                          f"a machine that was not busy ({now.describe()}); does your code "
                          "loop forever or wait for input?")  # fmt: skip

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_RSS_AT_START] = _resident_bytes()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After a test that failed, or that left this process much larger than it found it, free
    what it held (#30). A traceback keeps its frames' locals (two full AlexNets in a port
    test), and Keras models live in reference cycles, which only the collector frees; the
    collector seldom runs, and each full collection costs about 0.25 s with TensorFlow
    loaded, so it runs only then. On the stubs every failing test's models stayed, and lesson
    04's suite grew to 4.8 GB. pytest also leaves the last failure in ``sys.last_value`` (for
    an interactive ``pdb.pm()``), which kept one test's models alive into the next; ``--pdb``
    does not need it. Then the C allocator hands its freed pages back."""
    grew = _resident_bytes() - item.stash.get(_RSS_AT_START, 0)
    if item.stash.get(_FAILED, False) or grew > RELEASE_AFTER_BYTES:
        import gc

        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, name):
                setattr(sys, name, None)
        from alexnet_course.device import trim_malloc

        gc.collect()
        trim_malloc()


RELEASE_AFTER_BYTES = 128 << 20
_RSS_AT_START = pytest.StashKey[int]()


def _resident_bytes() -> int:
    """This process's resident size (0 where /proc cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    exc = call.excinfo
    if report.failed:
        item.stash[_FAILED] = True
    if exc is not None and exc.errisinstance(load.MachineBusy):
        if load.excused():
            report.machine_busy = True
            where = report.longrepr if isinstance(report.longrepr, tuple) else (item.path, 0)
            report.longrepr = (str(where[0]), where[1], exc.value.msg)
        else:  # the class grader decides every test: no test is excused there
            report.outcome = "failed"
            report.longrepr = ("not judged: the machine was too busy, and this run judges "
                               f"every test as measured ({exc.value.msg})")  # fmt: skip
    if exc is not None and report.failed and exc.errisinstance(NotImplementedError):
        report.not_started = True
        info, msg = task_info(item), str(exc.value)
        needed = re.search(r"Task (\d+(?:\.\d+)+)", msg)
        if info is not None and needed and needed.group(1) != info["task"]:
            # a test of a later task that calls an earlier, unfinished one
            report.longrepr = f"needs Task {needed.group(1)} (not started): {msg}"
        else:
            report.longrepr = f"not started: {msg}"
    elif exc is not None and report.failed and exc.errisinstance(
        (learner.LearnerImportError, remote.LearnerError, TaskTimeout, BudgetSpent)
    ):
        report.longrepr = str(exc.value)
    board = item.config.stash[BOARD]
    board.record(item, report)
    path = item.config.getoption("--outcomes-json")
    if path and report.when == "teardown" and item.nodeid in board.outcomes:
        # one line per finished test, at once: a run stopped later keeps what it decided
        o = board.outcomes[item.nodeid]
        with open(path, "a") as f:
            f.write(json.dumps({"nodeid": o.nodeid, "status": o.status, "output": o.output}) + "\n")
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if getattr(report, "not_started", False):
        return "failed", "N", ("NOT STARTED", {"yellow": True})
    if getattr(report, "machine_busy", False):
        return "skipped", "B", ("MACHINE BUSY", {"yellow": True})
    return None


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table: the score ends the run
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    board = config.stash.get(BOARD, None)
    if board is None or not board.outcomes or config.getoption("--no-score"):
        return
    tr = terminalreporter
    impl = "solutions" if config.getoption("--solutions") else "your files"
    tr.write_sep("=", f"alexnet-course score ({impl})")
    tr.write_line(f"{'lesson':<22}{'task':<7}{'tests':>7}{'points':>10}  status")
    totals: dict[str, list[float]] = {}
    for (lesson, task), outs in board.by_task().items():
        t = totals.setdefault(lesson, [0.0, 0.0, 0.0, 0.0])
        counted = [o for o in outs if o.status not in NOT_COUNTED]
        if counted:
            got = sum(o.score for o in counted)
            top = sum(o.max_points for o in counted)
            passed = sum(o.status == "passed" for o in counted)
            statuses = {o.status for o in counted}
            status = ("done" if statuses == {"passed"} else "not started"
                      if statuses == {"not started"} else "to do")  # fmt: skip
            tr.write_line(f"{lesson:<22}{task:<7}{f'{passed}/{len(counted)}':>7}"
                          f"{f'{got:g}/{top:g}':>10}  {status}")  # fmt: skip
            t[0] += got
            t[1] += top
        skipped = [o for o in outs if o.status == "skipped"]
        if skipped:  # GPU tests on a machine without one: listed, not counted
            pts = sum(o.points for o in skipped)
            tr.write_line(f"{lesson:<22}{task:<7}{f'-/{len(skipped)}':>7}{f'({pts:g})':>10}  "
                          "not run here (needs CUDA)")  # fmt: skip
            t[2] += pts
        busy = [o for o in outs if o.status == "busy"]
        if busy:  # too busy to judge: listed, not counted, with what to do
            pts = sum(o.points for o in busy)
            tr.write_line(f"{lesson:<22}{task:<7}{f'-/{len(busy)}':>7}{f'({pts:g})':>10}  "
                          "not judged: machine too busy (rerun when it is quieter)")  # fmt: skip
            t[3] += pts
    for lesson, (got, top, not_run, busy_pts) in totals.items():
        extra = (f"   (+{not_run:g} points in GPU tests not run here: needs CUDA)"
                 if not_run else "")  # fmt: skip
        if busy_pts:
            extra += (f"   (+{busy_pts:g} points not judged: the machine was too busy; rerun "
                      "those tests when it is quieter)")  # fmt: skip
        tr.write_line(f"{lesson}: {got:g}/{top:g}{extra}", bold=True)
    for o in board.outcomes.values():
        if o.status == "busy":
            tr.write_line(f"{o.name} (task {o.task}): {o.output}", yellow=True)


@pytest.hookimpl(wrapper=True)
def pytest_report_header(config: pytest.Config, start_path):
    """Keep pytest-benchmark's settings line out of a learner's run (``-v`` shows it)."""
    lines = yield
    if config.getoption("verbose") > 0:
        return lines
    out = []
    for entry in lines:
        if isinstance(entry, str) and entry.startswith("benchmark:"):
            continue
        if isinstance(entry, list):
            entry = [e for e in entry if not str(e).startswith("benchmark:")]
        out.append(entry)
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    board = session.config.stash.get(BOARD, None)
    if board is None:
        return
    if path := session.config.getoption("--results-json"):
        write_results_json(board, Path(path))


def read_outcomes(path: str | Path) -> list[dict]:
    """The rows ``--outcomes-json`` wrote (one JSON line per finished test), in order; a
    line that is not one (a run killed mid-write) ends the list."""
    rows = []
    try:
        text = Path(path).read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            break
        if type(row) is not dict or not isinstance(row.get("nodeid"), str):
            break
        rows.append(row)
    return rows


def write_results_json(board: Scoreboard, path: Path) -> dict:
    """Gradescope's results.json of this run, written by the grader's own writer."""
    result = gradescope_json(SubmissionResult(name="", tests=list(board.outcomes.values()),
                                              seconds=time.time() - board.started))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)
    return result
