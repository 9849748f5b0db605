"""The committed mutation-testing reports (docs/results/mutants/, issue #32) are of the current
solutions and graded tests: each lesson has a report whose sha256 of its solution files and
graded test files match the checkout's, or is listed in not-measured.json with the reason.
mutmut itself does not run here (``make mutants LESSON=NN_name`` does, in minutes to hours)."""

from __future__ import annotations

import json
import shutil

import pytest

from alexnet_course.course import lesson_names
from alexnet_course.devtools import mutants as mu
from tests.conftest import ROOT

LESSONS = lesson_names(ROOT, "solutions")
NOT_MEASURED = mu.load_json(ROOT / mu.REPORT_DIR / mu.NOT_MEASURED_FILE, {})


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_lesson_has_a_current_report_or_says_why_not(lesson):
    path = mu.report_path(ROOT, lesson)
    if not path.is_file():
        reason = NOT_MEASURED.get(lesson, {}).get("reason", "")
        assert reason.strip(), (
            f"{lesson}: no mutation-testing report ({path.relative_to(ROOT)}): run "
            f"`{mu.refresh_command(lesson)}`, or list the lesson in "
            f"{mu.REPORT_DIR / mu.NOT_MEASURED_FILE} with the reason it is not measured")
        return
    assert lesson not in NOT_MEASURED, f"{lesson} has a report and is listed as not measured"
    rep = json.loads(path.read_text())
    assert not rep.get("trial"), f"{path}: a trial run (--max-mutants) is not a report"
    stale = mu.stale_files(rep, ROOT)
    assert not stale, (
        f"{lesson}: the mutation-testing report is stale: {', '.join(stale)} changed since it "
        f"was made (commit {rep['commit'][:10]}); refresh it with `{mu.refresh_command(lesson)}` "
        f"(alexnet-course mutants {lesson}) and commit docs/results/mutants/{lesson}/")


@pytest.mark.parametrize("lesson", [x for x in LESSONS if mu.report_path(ROOT, x).is_file()])
def test_a_report_adds_up_and_justifies_every_equivalent_mutant(lesson):
    rep = json.loads(mu.report_path(ROOT, lesson).read_text())
    ms = [mu.Mutant(**{k: v for k, v in m.items() if k in mu.Mutant.__dataclass_fields__})
          for m in rep["mutants"]]  # fmt: skip
    assert mu.counts(ms) == rep["counts"]
    assert all(m.status in ("killed", "timeout", "survived", "equivalent", "gpu") for m in ms)
    assert all(m.reason.strip() for m in ms if m.status in ("equivalent", "gpu"))
    md = mu.report_path(ROOT, lesson, ".md").read_text()
    c = rep["counts"]
    assert f"{c['killed'] + c['timeout']} of {c['total'] - c['equivalent']} non-equivalent" in md
    for kind in ("solutions", "tests"):
        assert all(h in md for h in rep["files"][kind].values())


def test_the_justifications_are_one_line_each_and_name_a_lesson():
    data = mu.load_json(ROOT / mu.REPORT_DIR / mu.EQUIVALENT_FILE, {})
    for lesson, entries in data.items():
        assert lesson in LESSONS, lesson
        for e in entries:
            assert {"file", "line", "original", "mutated", "reason"} <= set(e), e
            assert e["file"].startswith(f"solutions/{lesson}/"), e
            assert e.get("verdict", "equivalent") in ("equivalent", "gap", "gpu"), e
            assert e["reason"].strip() and "\n" not in e["reason"], e


def test_a_changed_solution_or_test_makes_the_report_stale(tmp_path):
    for sub in ("solutions", "lessons"):
        shutil.copytree(ROOT / sub / "05_analysis", tmp_path / sub / "05_analysis")
    rep = {"lesson": "05_analysis", "files": mu.file_hashes(tmp_path, "05_analysis")}
    assert mu.stale_files(rep, tmp_path) == []
    sol = tmp_path / "solutions" / "05_analysis" / "analysis.py"
    sol.write_text(sol.read_text() + "\n# changed\n")
    test = next((tmp_path / "lessons" / "05_analysis").glob("test_*.py"))
    test.write_text(test.read_text() + "\n# changed\n")
    (tmp_path / "solutions" / "05_analysis" / "extra.py").write_text("x = 1\n")
    assert mu.stale_files(rep, tmp_path) == sorted(
        ["solutions/05_analysis/analysis.py", "solutions/05_analysis/extra.py"]
    ) + [test.relative_to(tmp_path).as_posix()]


def test_justifications_follow_a_mutant_by_its_text_not_its_line():
    ms = [mu.Mutant("solutions/x/a.py", 12, "a = 1", "a = 2", status="survived"),
          mu.Mutant("solutions/x/a.py", 40, "a = 1", "a = 2", status="survived"),
          mu.Mutant("solutions/x/a.py", 50, "b = 1", "b = 2", status="killed")]  # fmt: skip
    entries = [{"file": "solutions/x/a.py", "line": 38, "original": "a = 1", "mutated": "a = 2",
                "reason": "dead code"},
               {"file": "solutions/x/a.py", "line": 50, "original": "b = 1", "mutated": "b = 2",
                "reason": "stale"}]  # fmt: skip
    unused = mu.justify(ms, entries)
    assert [m.status for m in ms] == ["survived", "equivalent", "killed"]
    assert ms[1].reason == "dead code" and [e["reason"] for e in unused] == ["stale"]
    c = mu.counts(ms)
    assert (c["total"], c["equivalent"], c["survived"], c["kill_rate"]) == (3, 1, 1, 0.5)


def test_a_mutant_only_a_gpu_test_kills_is_listed_apart_and_counts_as_not_killed():
    ms = [mu.Mutant("solutions/x/a.py", 3, "d = dev(m)", "d = None", status="survived"),
          mu.Mutant("solutions/x/a.py", 5, "b = 1", "b = 2", status="killed")]  # fmt: skip
    entries = [{"file": "solutions/x/a.py", "line": 3, "original": "d = dev(m)",
                "mutated": "d = None", "verdict": "gpu", "reason": "test_on_gpu: CPU only here"}]  # fmt: skip
    assert mu.justify(ms, entries) == [] and ms[0].status == "gpu"
    c = mu.counts(ms)
    assert (c["gpu"], c["survived"], c["equivalent"], c["kill_rate"]) == (1, 0, 0, 0.5)
    rep = {"lesson": "x", "counts": c, "mutants": [vars(m) for m in ms], "suite_command": "",
           "mutation_engine": "", "commit": "0" * 40, "date": "", "wall_s": 60, "baseline_s": 1,
           "time_limit_s": 5, "load_average_at_start": [], "load_average_at_end": [],
           "hardware": "", "versions": {}, "files": {"solutions": {}, "tests": {}},
           "unmatched_justifications": []}  # fmt: skip
    md = mu.markdown(rep)
    assert "**1 of 2 non-equivalent mutants killed (50.0%)**" in md
    assert "killed by a GPU test this machine skips (1)" in md and "test_on_gpu: CPU only" in md


def test_mutants_run_at_once_each_in_its_own_copy_and_every_one_once(tmp_path):
    """--jobs: every mutant is tested exactly once, never two at a time in one scratch copy,
    and with two copies two run at once; a failure stops the run and is raised."""
    import threading
    import time

    from alexnet_course.devtools.mutants import Mutant, run_each

    todo = [(Mutant("solutions/x.py", i, "a", "b", i), f"src {i}") for i in range(12)]
    copies = [tmp_path / "one", tmp_path / "two"]
    busy, seen, most, lock = set(), [], [0], threading.Lock()

    def test_one(where, m, src):
        with lock:
            assert where not in busy, "two mutants in one scratch copy"
            busy.add(where)
            most[0] = max(most[0], len(busy))
        time.sleep(0.05)
        with lock:
            busy.discard(where)
            seen.append((m.line, src))

    run_each(todo, copies, test_one)
    assert sorted(seen) == [(i, f"src {i}") for i in range(12)]
    assert most[0] == 2

    def failing(where, m, src):
        raise RuntimeError("suite could not start")

    with pytest.raises(RuntimeError, match="could not start"):
        run_each(todo, copies, failing)
