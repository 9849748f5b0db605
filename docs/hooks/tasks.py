"""MkDocs hook: under each task heading of a lesson page, the exact command that runs that
task's graded tests (``-m taskN_M``, the marker the course's pytest plugin adds), checked
against the lesson's test files at build time so the page cannot point at a task that has
no tests."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError

HEADING = re.compile(r"^(### Task (\d+)\.(\d+)\b.*\{#task-\d+-\d+\})\s*$", re.M)
MARK = re.compile(r"""@pytest\.mark\.task\(\s*["'](\d+\.\d+)["']""")


def graded_tasks(lesson_dir: Path) -> set[str]:
    """The task ids that the lesson's graded test files mark."""
    return {m.group(1) for t in lesson_dir.glob("test_*.py") for m in MARK.finditer(t.read_text())}


def on_page_markdown(markdown: str, page, config, files) -> str:
    src = Path(page.file.src_uri)
    lesson_dir = Path(config["docs_dir"]).parent / "lessons" / src.stem
    if src.parent.name != "lessons" or src.suffix != ".md" or not lesson_dir.is_dir():
        return markdown
    tasks = graded_tasks(lesson_dir)

    def add(m: re.Match) -> str:
        task = f"{m.group(2)}.{m.group(3)}"
        if task not in tasks:
            raise PluginError(f"{src}: Task {task} has no graded test in lessons/{src.stem}")
        return (f"{m.group(1)}\n\n<small>Test it: `pytest lessons/{src.stem} "
                f"-m task{m.group(2)}_{m.group(3)}`</small>\n")  # fmt: skip

    return HEADING.sub(add, markdown)
