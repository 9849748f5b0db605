"""The worker: where learner code runs under the class grader (in the run's sandbox tier).

It imports the test files' views (:mod:`.views`: the observe halves, no reference), then the
learner files, saying which it is importing so that one that never finishes is named; then
it answers requests from the test process: run an observe half, read or call a learner
module's attribute (a hidden test's direct call). Every answer is data (:mod:`.wire`); what
the learner's code printed comes back with it, truncated.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from alexnet_course.grading.wire import ObservationError, pack, read_frame, write_all

OUTPUT_TAIL = 3000

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
    from alexnet_course.course import import_file

    if f"{name}.py" not in files or not name.isidentifier():
        raise ObservationError(f"{name} is not a learner module of this lesson "
                               f"({', '.join(files)})")  # fmt: skip
    return import_file(folder / f"{name}.py")


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
    from alexnet_course.course import LearnerImportError, import_file

    os.environ.pop("ALEXNET_COURSE_IMPL", None)  # the learner's files beside the tests
    cache: dict = {}
    for test in sorted(folder.glob("test_*.py")):  # first: they import what learner files need
        try:  # in the order the tests need it (lesson 04's: torch's libraries before TF's)
            _load_test_module(folder, test.name, cache)
        except BaseException:  # noqa: BLE001 - raised again, with the test, on first use
            cache.pop(test.name, None)
    for name in files:  # a file that fails to import fails every test that uses it, at once
        write_all(wfd, pack({"loading": name}))
        try:
            import_file(folder / name)
        except LearnerImportError:
            pass  # remembered by import_file; raised again, at once, on every use
    write_all(wfd, pack({"ready": True}))
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
        write_all(wfd, frame)
