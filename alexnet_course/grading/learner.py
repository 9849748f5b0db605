"""Load a lesson's code: the learner's files, or the reference solution's.

Graded tests never ``import`` a learner file directly. They write::

    alexnet = learner.load(__file__, "alexnet")

and get a lazy module: the file is imported on first use, inside a test, so that a learner's
syntax error or crash at import fails the tests that need that file with a clear message
instead of stopping the whole run. Which copy is loaded is decided once per run: the files
beside the test (default), or ``solutions/NN_name/`` under ``pytest --solutions``.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

from alexnet_course.course import (  # noqa: F401 - the names the lessons' tests and notebooks use
    LearnerImportError,
    course_root,
    forget,
    import_file,
    load_lesson_module,
)

IMPL_ENV = "ALEXNET_COURSE_IMPL"
_config: dict = {"impl": None, "solutions_dir": None, "sealed": False}


def configure(impl: str | None = None, solutions_dir: str | Path | None = None) -> None:
    """Choose what :func:`load` reads: ``"lessons"`` (the files beside the tests) or
    ``"solutions"``; ``solutions_dir`` overrides where the solutions are."""
    _config["impl"] = impl
    _config["solutions_dir"] = Path(solutions_dir).resolve() if solutions_dir else None
    forget()


def seal() -> None:
    """Never load a learner file in this process from now on (the grader's test process:
    learner code runs only in its sandboxed workers, where a learner module's functions are
    called, :func:`load`)."""
    _config["sealed"] = True
    forget()


def impl() -> str:
    return _config["impl"] or os.environ.get(IMPL_ENV) or "lessons"


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
