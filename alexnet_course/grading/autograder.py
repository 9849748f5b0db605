"""``run_autograder``'s side of the Gradescope bundle (:mod:`alexnet_course.authoring.bundle`
builds it): grade ``/autograder/submission`` with the course's trusted grader, in bubblewrap
where it starts, else as a pool uid, and write ``/autograder/results/results.json``.

``AUTOGRADER_ROOT`` (default ``/autograder``) moves every path; ``ALEXNET_COURSE_PYTHON``
names the interpreter ``run_autograder`` uses (default: the virtual environment
``setup.sh`` made); ``ALEXNET_COURSE_SANDBOX`` forces a tier.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.grading.grader import GradeError, find_lessons_root, read_lessons, unpack


def stage_submission(submission: Path, dest: Path, lessons: dict[str, list[str]]) -> Path:
    """What to grade in a Gradescope submission folder: the folder itself when it holds
    ``lessons/NN_name/`` (or ``NN_name/``), else a zip of such a folder, else the loose
    learner files uploaded one by one, laid out under ``dest`` by file name."""
    try:
        find_lessons_root(submission)
        return find_lessons_root(unpack(submission, dest / "folder")).parent  # a private copy
    except GradeError:
        pass
    for i, z in enumerate(sorted(submission.rglob("*.zip"))):
        if z.is_file() and not z.is_symlink():
            try:
                return find_lessons_root(unpack(z, dest / f"zip{i}")).parent
            except (GradeError, OSError):
                continue
    staged = dest / "loose" / "lessons"
    wanted = {f: lesson for lesson, files in lessons.items() for f in files}
    found = 0
    for p in sorted(submission.rglob("*.py")):
        lesson = wanted.get(p.name)
        if lesson and p.is_file() and not p.is_symlink():
            (staged / lesson).mkdir(parents=True, exist_ok=True)
            if not (staged / lesson / p.name).exists():
                shutil.copyfile(p, staged / lesson / p.name)
                found += 1
    if not found:
        raise GradeError("the submission holds no lessons/NN_name/ folder, no zip of one and "
                         f"none of the learner files ({', '.join(sorted(wanted))})")  # fmt: skip
    return staged.parent


def _private(paths: list[Path]) -> None:
    """Learner code may run as a pool uid in this container: what it must not read (the
    hidden tests, the results folder, an installed copy of the course library with more
    than the worker needs) is made readable by root alone. Only paths of the bundle's own
    installation are touched."""
    if os.geteuid() != 0:
        return
    for p in paths:
        if p.exists() and not p.is_symlink():
            os.chmod(p, 0o700)


def run(root: Path, echo=print) -> dict:
    """Grade ``root/submission`` into ``root/results/results.json`` (Gradescope's layout),
    in bubblewrap where it starts, else as a pool uid (Gradescope's container runs as root
    without user namespaces)."""
    import alexnet_course
    from alexnet_course.grading.grader import grade

    t0 = time.time()
    src = root / "source"
    conf = json.loads((src / "autograder.json").read_text())
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    package = Path(alexnet_course.__file__).resolve().parent
    installed = [package] if package.is_relative_to(root.resolve()) else []
    _private([src / "hidden", src / "autograder.json", results_dir, *installed])
    notes = []
    try:
        course = src / "course"
        specs = read_lessons(course, conf["lessons"], None)
        with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
            staged = stage_submission(root / "submission", Path(tmp) / "in",
                                      {s.name: s.learner_files for s in specs})  # fmt: skip
            hidden = src / "hidden" if (src / "hidden").is_dir() else None
            res = grade([staged], Path(tmp) / "out", course=course, lessons=conf["lessons"],
                        hidden=hidden, timeout=float(conf.get("timeout", 120)), jobs=1,
                        sandbox_tier=os.environ.get("ALEXNET_COURSE_SANDBOX", "auto"),
                        lesson_budget=conf.get("lesson_budget"), calibrate=False,
                        draw_seed=conf.get("draw_seed", 0),
                        echo=echo)[0]  # fmt: skip
            data = json.loads((Path(tmp) / "out" / res.name / "results.json").read_text())
            notes.append(f"graded in the {res.sandbox} sandbox tier")
    except (CourseError, OSError) as e:
        data = {"score": 0.0, "tests": [], "output": f"could not grade this submission: {e}"}
    data["execution_time"] = round(time.time() - t0, 2)
    data.setdefault("stdout_visibility", "hidden")
    if notes:
        data["output"] = "\n".join([data.get("output", ""), *notes]).strip()
    tmp_file = results_dir / "results.json.tmp"
    tmp_file.write_text(json.dumps(data, indent=2))
    tmp_file.replace(results_dir / "results.json")
    return data


def _main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m alexnet_course.grading.autograder")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="grade a Gradescope submission (run_autograder calls this)")
    r.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    args = p.parse_args(argv)
    data = run(args.root)
    top = data.get("extra_data", {}).get("max_score", 0)
    print(f"score {data.get('score', 0):g}/{top:g}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
