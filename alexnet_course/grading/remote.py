"""Observe learner code, check it elsewhere: the split that keeps verdicts out of reach.

Every graded test has two halves in one source file:

* an **observe** half: a module-level function of the test file that calls the learner's
  code on the test's inputs and returns **data only** (numbers, strings, lists, tuples,
  dicts, numpy arrays, torch tensors);
* a **check** half: the test function itself, which calls ``observe(fn, *args)`` and
  compares what came back with a reference it computes itself.

Locally (``pytest lessons/NN``) :func:`observe` calls ``fn`` in the same process: the same
messages and the same speed as a plain call. The result still goes through the same data
filter as in grading (:func:`normalize`), so a test that passes locally passes graded.

Under ``alexnet-course grade`` the test process never imports learner code (the lazy
learner modules never load there). :func:`observe` sends ``fn``'s name and its arguments
to a **worker** (:mod:`.worker`): a separate process, in the run's sandbox tier, that holds
the views of the test files (:mod:`.views`) and the learner's files. The worker runs ``fn`` and sends back its
result in a format that cannot execute code: one JSON header and one ``.npz`` archive read
with ``allow_pickle=False``. The verdict, the points and the test list stay in the
grader's process.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alexnet_course.grading.wire import (  # noqa: F401 - the names the tests import from here
    ObservationError,
    normalize,
    pack,
    read_frame,
    unpack,
    write_all,
    write_frame,
)
from alexnet_course.grading.worker import OUTPUT_TAIL

# learner exceptions re-raised with their own type on the grader's side (messages only)
REBUILT = (
    "ValueError", "TypeError", "RuntimeError", "KeyError", "IndexError", "AttributeError",
    "NotImplementedError", "ZeroDivisionError", "AssertionError", "ImportError",
    "ModuleNotFoundError", "FileNotFoundError", "OSError", "NameError", "StopIteration",
)  # fmt: skip


class LearnerError(Exception):
    """The learner's code raised an exception of a type the grader does not rebuild, or its
    process died; the message says which."""


class WorkerGone(LearnerError):
    """The sandboxed process ended while running the learner's code."""


# ---------------------------------------------------------------- observe
_state: dict = {"mode": "local", "workers": {}, "spec": None, "failed": {}, "load_timeout": 60.0}
WORKER_ENV = "ALEXNET_COURSE_WORKER"


def configure_remote(spec: dict | None, load_timeout: float = 60.0,
                     cap_check: Callable[[], str | None] | None = None) -> None:
    """Switch :func:`observe` to workers. ``spec`` maps a test file's name to the command that
    starts its worker (``{"test_model.py": [...argv], ...}``); ``None`` switches back. A
    worker whose learner files do not finish importing within ``load_timeout`` seconds is
    not started again: every later call to it fails at once with that reason.
    ``cap_check``, run after every answer, returns a reason when the submission is over a
    cap (the uid tier's written files): the answer is then refused."""
    for w in _state["workers"].values():
        w.close()
    _state["workers"] = {}
    _state["failed"] = {}
    _state["spec"] = spec
    _state["load_timeout"] = float(load_timeout)
    _state["cap_check"] = cap_check
    _state["mode"] = "remote" if spec is not None else "local"


def remote() -> bool:
    return _state["mode"] == "remote"


def _where(fn: Callable) -> tuple[str, str]:
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", "")
    if code is None or "<" in name or "." in name:
        raise ObservationError(f"observe() takes a module-level function of the test file, "
                               f"not {fn!r}")  # fmt: skip
    path = Path(code.co_filename)
    if not path.name.startswith("test_"):
        raise ObservationError(f"observe(): {fn.__name__} must be defined in a test_*.py file")
    return path.name, name


def observe(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` where learner code may run, and return its data.

    Args:
        fn: a module-level function of the calling test file; it calls the learner's code
            and returns data only (see the module docstring).
        *args: data only, sent to ``fn``.
        **kwargs: data only, sent to ``fn``.

    Returns:
        ``fn``'s result, through the data filter: lists, tuples, dicts, numbers, strings,
        ``numpy`` arrays and CPU ``torch`` tensors.

    Raises:
        Whatever ``fn`` raised: locally the exception itself; graded, an exception of the
        same built-in type with the same message (or :class:`LearnerError`).
    """
    __tracebackhide__ = True  # pytest: show the learner's frames, not these
    file, name = _where(fn)
    if not remote():
        return normalize(fn(*normalize(list(args)), **normalize(dict(kwargs))))
    return _worker_for(file).request({"kind": "observe", "file": file, "name": name,
                                      "args": list(args), "kwargs": dict(kwargs)})  # fmt: skip


def _worker_for(file: str) -> Worker:
    """The worker serving the test file ``file``: running, or started now (and its learner
    files imported, within the load limit)."""
    __tracebackhide__ = True  # pytest: show the learner's frames, not these
    from alexnet_course.course import LearnerImportError

    argv = _state["spec"].get(file)
    if argv is None:
        raise LearnerError(f"no worker is configured for {file}")
    key = json.dumps(argv)  # test files with the same command share one worker
    if key in _state["failed"]:
        raise LearnerImportError(_state["failed"][key])
    worker = _state["workers"].get(key)
    if worker is None or not worker.alive():
        worker = _state["workers"][key] = Worker(argv)
        try:
            worker.wait_ready(_state["load_timeout"])
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                worker.close()
                raise
            why = worker.load_failure(e, _state["load_timeout"])
            _state["failed"][key] = why
            raise LearnerImportError(why) from None
    return worker


def learner_attribute(file: str, module: str, attr: str) -> Any:
    """``module.attr`` of the learner's code, for a test that uses a learner module directly
    (``mod.two(13)``) in the grader's test process: data comes back as it is; a function or
    class comes back as :class:`RemoteFunction`, whose calls run in the worker."""
    __tracebackhide__ = True  # pytest: show the learner's frames, not these
    reply = _worker_for(file).request({"kind": "attr", "module": module, "attr": attr})
    if type(reply) is dict and reply.get("callable") is True:
        return RemoteFunction(file, module, attr)
    return reply.get("value") if type(reply) is dict else reply


class RemoteFunction:
    """A learner function called from a test in the grader's test process: the call runs in
    the worker; its arguments and its result must be data."""

    def __init__(self, file: str, module: str, attr: str) -> None:
        self.file, self.module, self.attr = file, module, attr
        self.__name__ = self.__qualname__ = attr

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # pytest: show the learner's frames, not these
        return _worker_for(self.file).request({
            "kind": "call", "module": self.module, "attr": self.attr,
            "args": list(normalize(list(args))), "kwargs": dict(normalize(dict(kwargs)))})

    def __repr__(self) -> str:
        return f"<learner function {self.module}.{self.attr} (runs in the sandbox)>"


class Worker:
    """The grader's end of one worker process (see :func:`serve`)."""

    def __init__(self, argv: list[str]) -> None:
        self.loading = ""  # the learner file the worker said it was importing
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Read the worker's start-up frames until it says its learner files are imported."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = read_frame(self.proc.stdout.fileno(), deadline)
            except BaseException:
                self.close()
                raise
            if type(frame) is not dict:
                self.close()
                raise LearnerError("the sandboxed process sent an unreadable answer")
            if frame.get("ready") is True:
                return
            self.loading = str(frame.get("loading", ""))[:200]

    def load_failure(self, error: BaseException, timeout: float) -> str:
        """One line for a worker that never became ready."""
        waited = time.monotonic() - self.t0
        file = self.loading or "the learner files"
        if isinstance(error, TimeoutError) or waited >= timeout:
            return (f"{file} did not finish importing within {timeout:g} s, so none of this "
                    "lesson's tests ran: does it do slow work (a search, a download, "
                    "training) at import time? Put that inside a function")  # fmt: skip
        if isinstance(error, (EOFError, BrokenPipeError)):
            return (f"the sandboxed process ended while importing {file} (exit code "
                    f"{self.proc.poll()}), so none of this lesson's tests ran")  # fmt: skip
        return f"{file} could not be loaded ({type(error).__name__}: {str(error)[:300]})"

    def request(self, message: dict, timeout: float | None = None) -> Any:
        __tracebackhide__ = True  # pytest: show the learner's frames, not these
        frame = pack(message)  # not data: the test's own error, raised before anything is sent
        deadline = time.monotonic() + timeout if timeout else None
        name = str(message.get("name") or f"{message.get('module')}.{message.get('attr')}")
        try:
            write_all(self.proc.stdin.fileno(), frame)
            reply = read_frame(self.proc.stdout.fileno(), deadline)
        except BaseException as e:  # a time limit, a dead worker, a malformed reply
            code = self.close()
            if isinstance(e, (EOFError, BrokenPipeError)):
                raise WorkerGone(f"the sandboxed process running your code ended (exit code "
                                 f"{code}) during {name}") from None  # fmt: skip
            if isinstance(e, (ObservationError, ValueError, KeyError, struct.error)):
                raise LearnerError(f"the sandboxed process sent an unreadable answer "
                                   f"({type(e).__name__}: {e})") from None  # fmt: skip
            raise
        if type(reply) is not dict:
            self.close()
            raise LearnerError("the sandboxed process sent an unreadable answer")
        over = _state["cap_check"]() if _state.get("cap_check") else None
        if over:  # nothing observed past a cap counts
            self.close()
            raise LearnerError(over)
        out = str(reply.get("output") or "")
        if out:  # what the learner's code printed: pytest shows it with the test's report
            sys.stdout.write(out if len(out) <= OUTPUT_TAIL else "..." + out[-OUTPUT_TAIL:])
        if reply.get("ok") is True:
            if message["kind"] == "attr":
                return {"callable": reply.get("callable") is True, "value": reply.get("value")}
            return reply.get("value")
        _raise(reply)

    def call(self, file: str, name: str, args: list, kwargs: dict, timeout: float | None = None):
        return self.request({"kind": "observe", "file": file, "name": name, "args": args,
                             "kwargs": kwargs}, timeout)  # fmt: skip

    def close(self) -> int | None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None


def _raise(reply: dict):
    __tracebackhide__ = True  # pytest: show the learner's frames, not these
    kind, message = str(reply.get("type", "Exception")), str(reply.get("message", ""))[:4000]
    where = str(reply.get("where", ""))[:2000]
    if kind == "NotData":
        raise ObservationError(message)
    if kind == "LearnerImportError":
        from alexnet_course.course import LearnerImportError

        raise LearnerImportError(message)
    if kind in REBUILT:
        exc = getattr(builtins, kind)(message)
        if where:
            exc.add_note(where)
        raise exc
    raise LearnerError(f"{kind}: {message}" + (f"\n{where}" if where else ""))


# ---------------------------------------------------------------- a graded run, unsandboxed
def _main(argv: list[str]) -> int:
    """``python -m alexnet_course.grading.remote LESSON_DIR [--learner-dir DIR] [pytest args]``:
    run a lesson's graded tests the way the grader splits them (tests here, learner code in a
    worker process), without the sandbox. For course authors checking a test's two halves."""
    import argparse
    import shutil
    import tempfile

    from alexnet_course.course import learner_files
    from alexnet_course.grading.sandbox import Tier, worker_command, worker_library
    from alexnet_course.grading.views import worker_view

    p = argparse.ArgumentParser(prog="python -m alexnet_course.grading.remote")
    p.add_argument("lesson_dir", type=Path)
    p.add_argument("--learner-dir", type=Path, default=None)
    args, rest = p.parse_known_args(argv)
    src = args.lesson_dir.resolve()
    learner_src = (args.learner_dir or src).resolve()
    with tempfile.TemporaryDirectory(prefix="observe-") as tmp:
        trusted = Path(tmp) / "trusted" / src.name
        work = Path(tmp) / "worker" / src.name
        trusted.mkdir(parents=True)
        work.mkdir(parents=True)
        files = [f.name for f in learner_files(src)]
        # the grader's own worker command, without the sandbox
        argv = worker_command(work, worker_library(Path(tmp) / "library"), Tier("none"),
                              files=[f for f in files if (learner_src / f).is_file()])  # fmt: skip
        (work / ".home").mkdir()
        spec = {}
        for t in sorted(src.glob("test_*.py")):
            shutil.copy(t, trusted / t.name)
            (work / t.name).write_text(worker_view(t.read_text(), t.name)[0])
            spec[t.name] = argv
        for f in files:
            if (learner_src / f).is_file():
                shutil.copy(learner_src / f, work / f)
        env = {**os.environ, WORKER_ENV: json.dumps(spec)}
        cmd = [sys.executable, "-m", "pytest", str(trusted), "-p", "no:cacheprovider",
               "--rootdir", str(trusted.parent), *rest]  # fmt: skip
        return subprocess.call(cmd, env=env, cwd=trusted.parent)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
