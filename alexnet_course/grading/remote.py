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
learner modules refuse to load there). :func:`observe` sends ``fn``'s name and its
arguments to a **worker**: a separate process, in a bubblewrap sandbox, that holds the
pristine test files and the learner's files. The worker runs ``fn`` and sends back its
result in a format that cannot execute code: one JSON header and one ``.npz`` archive read
with ``allow_pickle=False``. The verdict, the points and the test list stay in the
grader's process.
"""

from __future__ import annotations

import base64
import builtins
import importlib.util
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_ARRAY_BYTES = 2 * 2**30  # one observation's arrays
MAX_HEADER_BYTES = 64 * 2**20
MAX_DEPTH = 64
OUTPUT_TAIL = 3000
# learner exceptions re-raised with their own type on the grader's side (messages only)
REBUILT = (
    "ValueError", "TypeError", "RuntimeError", "KeyError", "IndexError", "AttributeError",
    "NotImplementedError", "ZeroDivisionError", "AssertionError", "ImportError",
    "ModuleNotFoundError", "FileNotFoundError", "OSError", "NameError", "StopIteration",
)  # fmt: skip


class ObservationError(Exception):
    """An observe function returned something that is not data."""


class LearnerError(Exception):
    """The learner's code raised an exception of a type the grader does not rebuild, or its
    process died; the message says which."""


class WorkerGone(LearnerError):
    """The sandboxed process ended while running the learner's code."""


# ---------------------------------------------------------------- the data filter
def _encode(obj: Any, arrays: list, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ObservationError("observation nested too deeply")
    if obj is None or type(obj) in (bool, str):
        return obj
    if type(obj) is int or type(obj) is float:
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays, depth + 1) for v in obj]
        return items if isinstance(obj, list) else {"__t": "tuple", "v": items}
    if isinstance(obj, dict):
        keys = list(obj.keys())
        for k in keys:
            if type(k) not in (str, int):
                raise ObservationError(f"observation dict key {k!r} is not a str or int")
        return {"__t": "dict", "k": keys, "v": [_encode(obj[k], arrays, depth + 1) for k in keys]}
    if isinstance(obj, (bytes, bytearray)):
        return {"__t": "bytes", "v": base64.b64encode(bytes(obj)).decode()}
    mod = type(obj).__module__.split(".")[0]
    if mod == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise ObservationError("observation holds a numpy array of Python objects")
            arrays.append(np.array(obj, copy=True))
            return {"__t": "ndarray", "i": len(arrays) - 1}
        if isinstance(obj, np.generic):
            return _encode(obj.item(), arrays, depth + 1)
    if mod == "torch":
        import torch

        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            dtype = str(t.dtype)
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            arrays.append(t.numpy().copy())
            return {"__t": "tensor", "i": len(arrays) - 1, "dtype": dtype}
        if isinstance(obj, torch.Size):
            return {"__t": "tuple", "v": [int(v) for v in obj]}
        if isinstance(obj, torch.dtype):
            return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _encode(float(obj), arrays, depth)
    if isinstance(obj, str):
        return str.__str__(obj)
    raise ObservationError(f"an observation must be data (numbers, strings, lists, dicts, "
                           f"arrays, tensors); got a {type(obj).__module__}.{type(obj).__name__}")


def _decode(obj: Any, arrays: list, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ObservationError("observation nested too deeply")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [_decode(v, arrays, depth + 1) for v in obj]
    if type(obj) is not dict:
        raise ObservationError(f"malformed observation: {type(obj).__name__}")
    tag = obj.get("__t")
    if tag == "tuple":
        return tuple(_decode(v, arrays, depth + 1) for v in obj["v"])
    if tag == "dict":
        keys, values = obj["k"], obj["v"]
        if len(keys) != len(values) or any(type(k) not in (str, int) for k in keys):
            raise ObservationError("malformed observation dict")
        return {k: _decode(v, arrays, depth + 1) for k, v in zip(keys, values)}
    if tag == "bytes":
        return base64.b64decode(str(obj["v"]))
    if tag in ("ndarray", "tensor"):
        i = obj["i"]
        if type(i) is not int or not 0 <= i < len(arrays):
            raise ObservationError("malformed observation: bad array index")
        a = arrays[i]
        if tag == "ndarray":
            return a
        import torch

        dtype = str(obj["dtype"])
        t = torch.from_numpy(a)
        if dtype == "torch.bfloat16":
            t = t.view(torch.bfloat16)
        elif str(t.dtype) != dtype:
            raise ObservationError(f"malformed observation: tensor dtype {dtype}")
        return t
    raise ObservationError(f"malformed observation: tag {tag!r}")


def normalize(obj: Any) -> Any:
    """What a graded run would get back for ``obj``: the same filter, without the wire."""
    arrays: list = []
    header = _encode(obj, arrays)
    return _decode(header, arrays)


def pack(obj: Any) -> bytes:
    """``obj`` as one frame: JSON header + ``.npz`` archive (no pickle anywhere)."""
    import numpy as np

    arrays: list = []
    header = json.dumps(_encode(obj, arrays)).encode()
    buf = io.BytesIO()
    if arrays:
        np.savez(buf, *arrays, allow_pickle=False)
    blob = buf.getvalue()
    return struct.pack("<QQ", len(header), len(blob)) + header + blob


def unpack(header: bytes, blob: bytes) -> Any:
    import numpy as np

    arrays = []
    if blob:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    return _decode(json.loads(header), arrays)


def _read_exact(fd: int, n: int, deadline: float | None = None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no answer in time")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> Any:
    nh, nb = struct.unpack("<QQ", _read_exact(fd, 16, deadline))
    if nh > MAX_HEADER_BYTES or nb > MAX_ARRAY_BYTES:
        raise ObservationError(f"observation too large ({nh + nb} bytes)")
    header = _read_exact(fd, nh, deadline)
    blob = _read_exact(fd, nb, deadline)
    return unpack(header, blob)


def write_frame(fd: int, obj: Any) -> None:
    _write_all(fd, pack(obj))


def _write_all(fd: int, data: bytes) -> None:
    data = memoryview(data)
    while data:
        n = os.write(fd, data)
        data = data[n:]


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
            _write_all(self.proc.stdin.fileno(), frame)
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


# ---------------------------------------------------------------- the worker
def _load_test_module(folder: Path, file: str, cache: dict) -> types.ModuleType:
    if file in cache:
        return cache[file]
    path = folder / file
    if "/" in file or not file.startswith("test_") or not path.is_file():
        raise ObservationError(f"no test file {file}")
    spec = importlib.util.spec_from_file_location(f"_graded_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cache[file] = module
    return module


def _learner_where(tb, folder: Path) -> str:
    """The learner-file frames of a traceback (never the test files' source)."""
    lines = []
    for fr in traceback.extract_tb(tb):
        p = Path(fr.filename)
        if p.parent == folder and not p.name.startswith("test_"):
            lines.append(f"  {p.name}, line {fr.lineno}, in {fr.name}: {(fr.line or '').strip()}")
    return "\n".join(lines[-8:])


NOT_DATA_HINT = (
    "under `alexnet-course grade` a test may call learner code directly only when the call "
    "takes and returns data (numbers, strings, lists, dicts, arrays, tensors); build "
    "objects (a model, a loader) inside an observe half and return data from it "
    "(docs/instructors.md, 'Writing a hidden test')"
)


def _learner_module(folder: Path, name: str, files: list[str]):
    from alexnet_course.grading import learner

    if f"{name}.py" not in files or not name.isidentifier():
        raise ObservationError(f"{name} is not a learner module of this lesson "
                               f"({', '.join(files)})")  # fmt: skip
    return learner.import_file(folder / f"{name}.py")


def _handle(request: dict, folder: Path, files: list[str], cache: dict) -> dict:
    kind = request.get("kind", "observe")
    if kind == "observe":
        module = _load_test_module(folder, str(request["file"]), cache)
        fn = getattr(module, str(request["name"]))
        return {"ok": True, "value": fn(*request["args"], **request["kwargs"])}
    module = _learner_module(folder, str(request["module"]), files)
    attr = str(request["attr"])
    if attr.startswith("__"):
        raise AttributeError(attr)
    value = getattr(module, attr)
    what = f"{request['module']}.{attr}"
    if kind == "attr":
        if callable(value):
            return {"ok": True, "callable": True}
        return {"ok": True, "callable": False, "value": _as_data(value, what)}
    if kind == "call":
        result = value(*request["args"], **request["kwargs"])
        return {"ok": True, "value": _as_data(result, f"{what}(...)")}
    raise ObservationError(f"unknown request {kind!r}")


def _as_data(value: Any, what: str) -> Any:
    try:
        pack(value)
    except ObservationError as e:
        raise _NotData(f"{what} gave a {type(value).__module__}.{type(value).__name__}, which "
                       f"cannot leave the sandbox ({e}): {NOT_DATA_HINT}") from None  # fmt: skip
    return value


class _NotData(Exception):
    pass


def serve(folder: str | Path, files: list[str] | tuple = ()) -> None:
    """The worker's loop: import the learner ``files`` (saying which, so that a file that
    never finishes importing is named), then read a call, run it, send back data or the
    error. Its stdin and stdout carry the frames; what the learner's code prints goes to a
    private file and comes back, truncated, with each answer."""
    folder = Path(folder).resolve()
    files = [str(f) for f in files]
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"worker-output-{os.getpid()}.txt"
    log = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.path.insert(0, str(folder))
    os.chdir(folder)
    from alexnet_course.grading import learner

    learner.configure("lessons")
    cache: dict = {}
    for test in sorted(folder.glob("test_*.py")):  # first: they import what learner files need
        try:  # in the order the tests need it (lesson 04's: torch's libraries before TF's)
            _load_test_module(folder, test.name, cache)
        except BaseException:  # noqa: BLE001 - raised again, with the test, on first use
            cache.pop(test.name, None)
    for name in files:  # a file that fails to import fails every test that uses it, at once
        _write_all(wfd, pack({"loading": name}))
        try:
            learner.import_file(folder / name)
        except learner.LearnerImportError:
            pass  # remembered by import_file; raised again, at once, on every use
    _write_all(wfd, pack({"ready": True}))
    while True:
        try:
            request = read_frame(rfd)
        except EOFError:
            return
        os.ftruncate(log, 0)
        os.lseek(log, 0, os.SEEK_SET)
        try:
            reply = _handle(request, folder, files, cache)
            frame = pack(reply)  # encode now: a value that is not data is the learner's error
        except BaseException as e:  # noqa: BLE001 - anything the learner's code raises
            frame = None
            kind = "NotData" if isinstance(e, _NotData) else type(e).__name__
            reply = {"ok": False, "type": kind, "message": str(e)[:4000],
                     "where": _learner_where(e.__traceback__, folder)}  # fmt: skip
        sys.stdout.flush()
        sys.stderr.flush()
        size = os.lseek(log, 0, os.SEEK_END)
        os.lseek(log, max(0, size - OUTPUT_TAIL), os.SEEK_SET)
        output = os.read(log, OUTPUT_TAIL).decode(errors="replace")
        if frame is None or output:
            reply["output"] = output
            frame = pack(reply)
        _write_all(wfd, frame)


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
