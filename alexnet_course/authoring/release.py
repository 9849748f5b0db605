"""The learner's release: ``alexnet-course release OUT [--classroom]`` writes the course
without its solutions, its project tests or its development tooling, with every lesson's
learner files regenerated as stubs, and a start page, Makefile and pytest settings of the
learner's own (:mod:`.learner_copy`): every command the copy's README names works there."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from alexnet_course.authoring import learner_copy
from alexnet_course.course import RELEASE_EXCLUDED, RELEASE_ITEMS
from alexnet_course.grading.grader import GradeError

DEVTOOLS_BLOCK = re.compile(r"<!-- devtools -->.*?<!-- /devtools -->\n?", re.S)

def release(course: Path, out: Path) -> list[str]:
    """Write the learner's copy of the course to ``out``: everything but the solutions, the
    project's own tests and its development tooling (``alexnet_course.devtools``), with every
    lesson's learner files regenerated as stubs and the learner's own README.md, Makefile
    and pytest settings.

    Returns:
        The lesson files written as stubs.
    """
    from alexnet_course.authoring.stubs import generate

    if out.exists() and any(out.iterdir()):
        raise GradeError(f"{out} exists and is not empty; choose a new folder")
    if not (course / "solutions").is_dir():
        raise GradeError(f"{course} has no solutions/: release from the instructor's course")
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".benchmarks")
    package_ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *RELEASE_EXCLUDED)
    for name in RELEASE_ITEMS:
        src = course / name
        if src.is_dir():
            shutil.copytree(src, out / name,
                            ignore=package_ignore if name == "alexnet_course" else ignore)
        elif src.is_file():
            shutil.copy2(src, out / name)
    # the mutation-testing reports quote the reference solutions line by line
    shutil.rmtree(out / "docs" / "results" / "mutants", ignore_errors=True)
    generate(course / "solutions", out / "lessons")
    learner_copy.write(course, out)  # the learner's README, Makefile and pytest settings
    reference = out / "docs" / "reference.md"
    if reference.is_file():  # the development tooling's part of the library reference
        reference.write_text(DEVTOOLS_BLOCK.sub("", reference.read_text()))
    stubs = sorted(str(p.relative_to(out)) for p in (out / "lessons").rglob("*.py")
                   if not p.name.startswith("test_"))  # fmt: skip
    from alexnet_course.authoring.stubs import BEGIN

    leaks = [str(p.relative_to(out)) for p in (out / "lessons").rglob("*.py")
             if any(BEGIN.match(line) for line in p.read_text(errors="replace").splitlines())]
    if leaks:
        shutil.rmtree(out)
        raise GradeError(f"release aborted: solution fences found in {', '.join(leaks)}")
    return stubs
