"""The course's layout: where it lives, its lessons and their learner files, and loading a
lesson's code from the reference solutions or from the learner's own files.

The one object that knows the layout (nbgrader's ``coursedir``): the comparison runner,
the benchmark, the grader and the authoring tools all read it here.

* ``solutions/NN_name/*.py``: the reference solutions (the instructor's checkout only);
* ``lessons/NN_name/*.py``: the learner files (stubs in a release) and ``test_*.py``, the
  graded tests;
* an implementation (``impl``) is ``"solutions"`` or ``"lessons"``: which copy of the
  lessons' code a run uses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import traceback
import types
from pathlib import Path

from alexnet_course import CourseError

LESSON_DIR = re.compile(r"^(?P<num>\d\d)_[a-z0-9_]+$")
IMPLS = ("solutions", "lessons")
ROOT_ENV = "ALEXNET_COURSE_ROOT"
# what a learner's release holds besides the regenerated lessons (no solutions, no tests,
# no development tooling)
RELEASE_ITEMS = ("alexnet_course", "lessons", "docs", "README.md", "pyproject.toml", "Makefile",
                 "mkdocs.yml", ".gitignore")  # fmt: skip
RELEASE_EXCLUDED = ("devtools",)  # alexnet_course/devtools: the project's own tooling

_cache: dict[Path, types.ModuleType] = {}
_failed: dict[Path, str] = {}  # files that could not be imported: the same error, at once


class LearnerImportError(CourseError):
    """A lesson file could not be imported (missing, syntax error, exception at import)."""


def course_root() -> Path:
    """The course checkout: ``$ALEXNET_COURSE_ROOT``, else the current folder or one above it
    that holds ``lessons/``, else the folder above the installed package."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "lessons").is_dir() and (d / "pyproject.toml").is_file():
            return d
    return Path(__file__).resolve().parents[1]


def lesson_names(root: Path | None = None, impl: str = "lessons") -> list[str]:
    """The lesson folders (``01_data``, ...) under ``root/impl``."""
    base = (root or course_root()) / impl
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and LESSON_DIR.match(p.name))


def learner_files(folder: Path) -> list[Path]:
    """The files a learner edits in a lesson folder: every ``*.py`` that is not a test."""
    return sorted(
        p for p in folder.glob("*.py")
        if not p.name.startswith(("test_", "conftest")) and p.name != "__init__.py"
    )  # fmt: skip


def task_key(task: str) -> tuple:
    """Sort key of a task id: ``"3.10"`` after ``"3.9"``."""
    return tuple(int(p) if p.isdigit() else p for p in task.split("."))


def resolve_impl(requested: str | None, root: Path | None = None) -> str:
    """The implementation a run uses: the one asked for, else ``solutions`` where the course
    has them (the instructor's checkout), else ``lessons`` (a learner's release)."""
    if requested is not None:
        if requested not in IMPLS:
            raise CourseError(f"impl {requested!r}: choose one of {', '.join(IMPLS)}")
        return requested
    return "solutions" if ((root or course_root()) / "solutions").is_dir() else "lessons"


def forget() -> None:
    """Drop every imported lesson file (the next use imports it again)."""
    _cache.clear()
    _failed.clear()


def import_file(path: Path) -> types.ModuleType:
    """Import one file as a fresh module (cached per path), with a clear error on failure; a
    file that failed raises the same error at once on every later use."""
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


def load_lesson_module(lesson: str, name: str, impl: str = "solutions",
                       root: str | Path | None = None) -> types.ModuleType:  # fmt: skip
    """Import ``<root>/<impl>/<lesson>/<name>.py`` now (for the runner and notebooks)."""
    root = Path(root) if root else course_root()
    return import_file(root / impl / lesson / f"{name}.py")
