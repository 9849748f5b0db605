"""What grading decided, and the files that carry it: results.json and the gradebook.

One model (:class:`TestResult`, :class:`SubmissionResult`) with one Gradescope writer
(:func:`gradescope_json`) and one gradebook writer (:func:`write_gradebook`). The class
grader fills it from the trusted outcomes of each lesson run; the pytest plugin fills it for
a local run (``--results-json``) with the same classes, so both write the same format.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_course.course import task_key

# a test not run here (a GPU test on a machine without one) or not judged here (a local run
# on a machine too busy to judge speed) counts for nothing, either way
NOT_COUNTED = ("skipped", "busy")


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    nodeid: str
    lesson: str
    task: str
    points: float
    hidden: bool = False
    status: str = "failed"  # passed | failed | not started | skipped (GPU, no GPU) | busy
    output: str = ""

    @property
    def name(self) -> str:
        return self.nodeid.split("::")[-1]

    @property
    def score(self) -> float:
        return self.points if self.status == "passed" else 0.0

    @property
    def max_points(self) -> float:
        """Under the class grader, which tests are not run (GPU tests) is decided by the
        trusted collection, not by a test process; "busy" only happens in a local run."""
        return 0.0 if self.status in NOT_COUNTED else self.points


@dataclass
class SubmissionResult:
    name: str
    source: str = ""
    tests: list[TestResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sandbox: str = ""  # the tier learner code ran in: bwrap | uid | none

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_points for t in self.tests)


def gradescope_json(result: SubmissionResult) -> dict:
    """Gradescope's results.json (https://gradescope-autograders.readthedocs.io, Output
    format). Hidden tests carry no output and show after publishing."""
    tests = []
    for t in sorted(result.tests, key=lambda t: (t.lesson, task_key(t.task), t.nodeid)):
        output = "" if t.hidden else t.output  # hidden tests: no source and no output
        tests.append({
            "name": f"{t.lesson} task {t.task}: {t.name}",
            "number": t.task,
            "score": t.score,
            "max_score": t.max_points,
            # Gradescope knows "passed" and "failed"; a test not run here has neither
            **({} if t.status in NOT_COUNTED else {"status": "passed" if t.status == "passed"
                                                  else "failed"}),  # fmt: skip
            "output": output[:4000],
            "visibility": "after_published" if t.hidden else "visible",
            "tags": [t.lesson, t.status],
        })  # fmt: skip
    out = {
        "score": sum(t["score"] for t in tests),
        "execution_time": round(result.seconds, 2),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        # Gradescope's format has no top-level maximum (its schema allows none): here
        "extra_data": {"max_score": sum(t["max_score"] for t in tests)},
    }
    if result.sandbox or result.errors:
        out["extra_data"].update(sandbox=result.sandbox, errors=list(result.errors))
    if result.errors:
        out["output"] = "\n".join(result.errors)
    return out


def task_columns(results: list[SubmissionResult]) -> list[tuple[str, str]]:
    cols = {(t.lesson, t.task) for r in results for t in r.tests}
    return sorted(cols, key=lambda c: (c[0], task_key(c[1])))


def write_gradebook(results: list[SubmissionResult], path: Path) -> None:
    """A row per submission, a column per task, the total, the maximum and the sandbox tier
    the submission ran in; written whole, then moved into place."""
    columns = task_columns(results)
    rows = sorted(results, key=lambda r: r.name)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", *[f"{lesson} {task}" for lesson, task in columns], "total",
                    "max", "sandbox"])  # fmt: skip
        for r in rows:
            by: dict[tuple[str, str], float] = {}
            for t in r.tests:
                by[(t.lesson, t.task)] = by.get((t.lesson, t.task), 0.0) + t.score
            w.writerow([r.name, *[f"{by.get(c, 0.0):g}" for c in columns], f"{r.score:g}",
                        f"{r.max_score:g}", r.sandbox])  # fmt: skip
    tmp.replace(path)


def summary_table(results: list[SubmissionResult]) -> str:
    lessons = sorted({c[0] for c in task_columns(results)})
    width = max([len(r.name) for r in results] + [10])
    lines = [f"{'submission':<{width}}  " + "  ".join(f"{les:>18}" for les in lessons)
             + f"  {'total':>10}"]  # fmt: skip
    for r in sorted(results, key=lambda r: r.name):
        cells = []
        for les in lessons:
            got = sum(t.score for t in r.tests if t.lesson == les)
            top = sum(t.max_points for t in r.tests if t.lesson == les)
            cells.append(f"{f'{got:g}/{top:g}':>18}")
        lines.append(f"{r.name:<{width}}  " + "  ".join(cells) + f"  {f'{r.score:g}/{r.max_score:g}':>10}")
    return "\n".join(lines)
