"""Load a lesson's code: the learner's files, or the reference solution's.

Graded tests never ``import`` a learner file directly. They write::

    alexnet = learner.load(__file__, "alexnet")

and get a lazy module: the file is imported on first use, inside a test, so that a learner's
syntax error or crash at import fails the tests that need that file with a clear message
instead of stopping the whole run. Which copy is loaded is decided once per run: the files
beside the test (default), or ``solutions/NN_name/`` under ``pytest --solutions``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
import types
from pathlib import Path

from alexnet_course import CourseError

IMPL_ENV = "ALEXNET_COURSE_IMPL"
ROOT_ENV = "ALEXNET_COURSE_ROOT"
_config: dict = {"impl": None, "solutions_dir": None, "sealed": False}
_cache: dict[Path, types.ModuleType] = {}
_failed: dict[Path, str] = {}  # files that could not be imported: the same error, at once


class LearnerImportError(CourseError):
    """A learner file could not be imported (missing, syntax error, exception at import)."""


def configure(impl: str | None = None, solutions_dir: str | Path | None = None) -> None:
    """Choose what :func:`load` reads: ``"lessons"`` (the files beside the tests) or
    ``"solutions"``; ``solutions_dir`` overrides where the solutions are."""
    _config["impl"] = impl
    _config["solutions_dir"] = Path(solutions_dir).resolve() if solutions_dir else None
    _cache.clear()
    _failed.clear()


def seal() -> None:
    """Refuse to load any learner file in this process from now on (the grader's test
    process: learner code runs only in its sandboxed workers)."""
    _config["sealed"] = True
    _cache.clear()


def impl() -> str:
    return _config["impl"] or os.environ.get(IMPL_ENV) or "lessons"


def course_root() -> Path:
    """The course checkout: ``$ALEXNET_COURSE_ROOT``, else the current folder or one above it
    that holds ``lessons/``, else the folder above the installed package."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "lessons").is_dir() and (d / "pyproject.toml").is_file():
            return d
    return Path(__file__).resolve().parents[2]


def source_dir(lesson_dir: str | Path) -> Path:
    """Where a lesson's learner files are read from under the current setting."""
    lesson_dir = Path(lesson_dir).resolve()
    if impl() != "solutions":
        return lesson_dir
    base = _config["solutions_dir"]
    if base is None:
        candidate = lesson_dir.parent.parent / "solutions"
        base = candidate if candidate.is_dir() else course_root() / "solutions"
    folder = base / lesson_dir.name
    if not folder.is_dir():
        raise LearnerImportError(f"--solutions: no solution folder {folder} (this copy of the "
                                 "course may be a learner release without solutions)")  # fmt: skip
    return folder


def import_file(path: Path) -> types.ModuleType:
    """Import one file as a fresh module (cached per path), with a clear error on failure."""
    path = path.resolve()
    if path in _cache:
        return _cache[path]
    if path in _failed:
        raise LearnerImportError(_failed[path])
    if not path.is_file():
        raise LearnerImportError(f"{path} does not exist: restore it with `git checkout` or "
                                 "regenerate it with `alexnet-course stubs`")  # fmt: skip
    name = f"_course_{path.parent.name}_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # a learner's file may raise anything, SystemExit included
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        where = traceback.extract_tb(e.__traceback__)
        line = next((f"line {fr.lineno}" for fr in reversed(where) if fr.filename == str(path)),
                    f"line {getattr(e, 'lineno', '?')}")  # fmt: skip
        _failed[path] = f"could not import {path.name} ({line}): {type(e).__name__}: {e}"
        raise LearnerImportError(_failed[path]) from None
    _cache[path] = module
    return module


class LazyModule(types.ModuleType):
    """A module proxy that imports the real file on first attribute access."""

    def __init__(self, lesson_dir: Path, name: str, test_file: str = "") -> None:
        super().__init__(name)
        self.__dict__["_where"] = (lesson_dir, name, test_file)

    def _load(self) -> types.ModuleType:
        lesson_dir, name, _ = self.__dict__["_where"]
        return import_file(source_dir(lesson_dir) / f"{name}.py")

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        if _config["sealed"]:  # the grader's test process: the learner's code runs elsewhere
            from alexnet_course.grading import remote

            _, name, test_file = self.__dict__["_where"]
            return remote.learner_attribute(test_file, name, attr)
        return getattr(self._load(), attr)


def load(test_file: str | Path, name: str) -> LazyModule:
    """The learner module ``name`` of the lesson that ``test_file`` belongs to. In the
    class grader's test process it never loads: a function of it called there (``mod.f(3)``)
    runs in the sandboxed worker, with data for arguments and result."""
    return LazyModule(Path(test_file).resolve().parent, name, Path(test_file).name)


def load_lesson_module(lesson: str, name: str, impl_: str = "solutions",
                       root: str | Path | None = None) -> types.ModuleType:  # fmt: skip
    """Import ``<root>/<impl_>/<lesson>/<name>.py`` now (for the runner and notebooks)."""
    root = Path(root) if root else course_root()
    return import_file(root / impl_ / lesson / f"{name}.py")
