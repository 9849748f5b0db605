"""Learner stubs, generated from the reference solutions (nbgrader's idea, minitorch's stub).

In ``solutions/NN_name/*.py`` a region between ``### BEGIN SOLUTION <task>`` and
``### END SOLUTION <task>`` is the answer to a task. The learner's copy in
``lessons/NN_name/`` replaces each region with the one uniform, greppable stub::

    # TODO: Task 3.2 -- see docs/lessons/03_torch_scratch.md#task-3-2
    raise NotImplementedError("Task 3.2 not started (docs/lessons/03_torch_scratch.md#task-3-2)")

Every other line is copied as is. The fences are linted: each BEGIN is closed by an END with
the same task id before the next BEGIN, and every task id belongs to the lesson (``3.x`` in
``03_*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.course import LESSON_DIR, learner_files

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?: (?P<task>\S+))?\s*$")
END = re.compile(r"^[ \t]*### END SOLUTION(?: (?P<task>\S+))?\s*$")
HEADER = (
    "# Your file for lesson {lesson}: fill in every TODO, then run `pytest lessons/{lesson}`.\n"
    "# Generated from the reference solution by `alexnet-course stubs`.\n"
)


class FenceError(CourseError):
    """A solution file's fences are malformed; the message names the file and line."""


@dataclass(frozen=True)
class Fence:
    task: str
    begin: int  # 0-based line index of the BEGIN line
    end: int  # 0-based line index of the END line
    indent: str


def docs_anchor(lesson: str, task: str) -> str:
    return f"docs/lessons/{lesson}.md#task-{task.replace('.', '-')}"


def lesson_number(lesson: str) -> int:
    m = LESSON_DIR.match(lesson)
    if not m:
        raise FenceError(f"{lesson}: lesson folders are named NN_name (e.g. 03_torch_scratch)")
    return int(m["num"])


def parse_fences(text: str, path: str | Path, lesson: str) -> list[Fence]:
    """Find and lint the fences of one solution file.

    Raises:
        FenceError: a BEGIN without END, an END without BEGIN, nested fences, mismatched or
            missing task ids, or a task id of another lesson.
    """
    number = lesson_number(lesson)
    fences: list[Fence] = []
    open_: tuple[int, str, str] | None = None
    for i, line in enumerate(text.splitlines()):
        if b := BEGIN.match(line):
            where = f"{path}:{i + 1}"
            if open_ is not None:
                raise FenceError(f"{where}: BEGIN SOLUTION inside the fence opened at line "
                                 f"{open_[0] + 1} (fences do not nest)")  # fmt: skip
            task = b["task"]
            if not task:
                raise FenceError(f"{where}: BEGIN SOLUTION needs a task id, e.g. '{number}.1'")
            if not re.fullmatch(rf"{number}\.\d+", task):
                raise FenceError(f"{where}: task id {task!r} does not belong to lesson {lesson} "
                                 f"(expected '{number}.N')")  # fmt: skip
            open_ = (i, task, b["indent"])
        elif e := END.match(line):
            where = f"{path}:{i + 1}"
            if open_ is None:
                raise FenceError(f"{where}: END SOLUTION without a BEGIN")
            if e["task"] != open_[1]:
                raise FenceError(f"{where}: END SOLUTION {e['task']} closes BEGIN SOLUTION "
                                 f"{open_[1]} opened at line {open_[0] + 1}")  # fmt: skip
            fences.append(Fence(open_[1], open_[0], i, open_[2]))
            open_ = None
        elif re.match(r"^\s*###\s*(BEGIN|END)\b", line) or re.match(r"^\s*###.*SOLUTION", line):
            raise FenceError(f"{path}:{i + 1}: unrecognised fence {line.strip()!r}")
    if open_ is not None:
        raise FenceError(f"{path}:{open_[0] + 1}: BEGIN SOLUTION {open_[1]} is never closed")
    return fences


def make_stub(text: str, path: str | Path, lesson: str) -> str:
    """The learner's version of one solution file."""
    lines = text.splitlines(keepends=True)
    fences = parse_fences(text, path, lesson)
    out: list[str] = []
    pos = 0
    for f in fences:
        out.extend(lines[pos : f.begin])
        anchor = docs_anchor(lesson, f.task)
        out.append(f"{f.indent}# TODO: Task {f.task} -- see {anchor}\n")
        out.append(f'{f.indent}raise NotImplementedError("Task {f.task} not started ({anchor})")\n')
        pos = f.end + 1
    out.extend(lines[pos:])
    body = "".join(out)
    # Keep a module docstring first: the header goes after it.
    header = HEADER.format(lesson=lesson)
    m = re.match(r'(\s*(?:"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\')\n)', body)
    return body[: m.end()] + header + body[m.end() :] if m else header + body


def tasks_of(solution_dir: Path) -> dict[str, list[str]]:
    """``{task id: [file names]}`` of every fenced task in a lesson's solution."""
    tasks: dict[str, list[str]] = {}
    for p in learner_files(solution_dir):
        for f in parse_fences(p.read_text(), p, solution_dir.name):
            tasks.setdefault(f.task, [])
            if p.name not in tasks[f.task]:
                tasks[f.task].append(p.name)
    return tasks


def generate(solutions: Path, lessons: Path, *, check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) every lesson's stubs.

    Returns:
        The relative paths that were written, or with ``check`` that differ from what the
        solutions generate (empty when all are up to date).
    """
    changed: list[str] = []
    for sol in sorted(p for p in solutions.iterdir() if p.is_dir() and LESSON_DIR.match(p.name)):
        for src in learner_files(sol):
            dst = lessons / sol.name / src.name
            stub = make_stub(src.read_text(), src, sol.name)
            if not dst.exists() or dst.read_text() != stub:
                changed.append(str(dst.relative_to(lessons.parent)))
                if not check:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_text(stub)
    return changed
