"""The comparison is the course's own code end to end (#31): with ``--impl lessons`` a
learner's own lesson 01 makes the split and their lesson 05 writes the analysis, and an
unfinished task stops the run before any training, in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alexnet_course.cli import main
from alexnet_course.course import learner_files
from tests.conftest import ROOT

RUN = ["compare", "--profile", "smoke", "--arms", "torch-scratch", "--epochs", "1", "--no-download",
       "--impl", "lessons"]  # fmt: skip
# a correct split in another style: each class's first k images (no shuffle), rounded the
# lesson's way; the held-out set differs from the reference's seeded draw
OWN_SPLIT = '''
    labels = np.asarray(labels)
    n = len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    take = np.round(val_size * counts / n).astype(int)
    order = np.argsort(-counts, kind="stable")
    i = 0
    while take.sum() != val_size:
        take[order[i % len(order)]] += 1 if take.sum() < val_size else -1
        i += 1
    val_idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c, k in zip(classes, take)]))
    return np.setdiff1d(np.arange(n), val_idx), val_idx
'''
OWN_ANALYSIS = '''
    return "MY OWN ANALYSIS: " + ", ".join(r["arm"] for r in results) + "." * 300
'''


def _learner_copy(tmp_path: Path, replace: dict[tuple[str, str], tuple[str, str]]) -> Path:
    """A learner's copy with every lesson finished (the solutions' files), then the
    ``(lesson, file): (fence task, new body)`` replacements of a task's code."""
    copy = tmp_path / "copy"
    (copy / "lessons").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for lesson in sorted((ROOT / "solutions").iterdir()):
        (copy / "lessons" / lesson.name).mkdir()
        for f in learner_files(lesson):
            shutil.copy(f, copy / "lessons" / lesson.name / f.name)
    for (lesson, file), (task, body) in replace.items():
        path = copy / "lessons" / lesson / file
        text = path.read_text()
        begin, end = f"### BEGIN SOLUTION {task}\n", f"### END SOLUTION {task}"
        a = text.index(begin) + len(begin)
        text = text[:a] + body.lstrip("\n") + "    " + text[text.index(end, a):]
        path.write_text(text)
    return copy


@pytest.mark.own_process  # a comparison in-process (#30)
def test_the_learners_split_and_analysis_are_the_runs(tmp_path, monkeypatch):
    copy = _learner_copy(tmp_path, {("01_data", "data.py"): ("1.6", OWN_SPLIT)})
    text = (copy / "lessons" / "05_analysis" / "analysis.py").read_text()
    start = text.index("### BEGIN SOLUTION 5.5\n") + len("### BEGIN SOLUTION 5.5\n")
    text = text[:start] + OWN_ANALYSIS.lstrip("\n") + "    " + text[text.index("### END SOLUTION 5.5"):]
    (copy / "lessons" / "05_analysis" / "analysis.py").write_text(text)
    monkeypatch.chdir(ROOT)
    assert main([*RUN[:-1], "solutions", "--out", str(tmp_path / "reference")]) == 0
    monkeypatch.chdir(copy)
    assert main([*RUN, "--out", str(tmp_path / "learner")]) == 0
    ref = json.loads((tmp_path / "reference" / "torch-scratch" / "results.json").read_text())
    own = json.loads((tmp_path / "learner" / "torch-scratch" / "results.json").read_text())
    assert own["provenance"]["impl"] == "lessons"
    assert "lesson 01's stratified_split (lessons)" == own["provenance"]["split"]["by"]
    assert own["provenance"]["split"]["val"] == ref["provenance"]["split"]["val"]
    assert own["provenance"]["split"]["val_sha256"] != ref["provenance"]["split"]["val_sha256"]
    report = (tmp_path / "learner" / "report.md").read_text()
    assert "MY OWN ANALYSIS" in report and "lesson 05's analysis, lessons" in report
    assert "MY OWN ANALYSIS" not in (tmp_path / "reference" / "report.md").read_text()


@pytest.mark.parametrize("lesson, file, task", [("01_data", "data.py", "1.6"),
                                                ("05_analysis", "analysis.py", "5.4")])
def test_an_unfinished_task_stops_the_run_in_one_line(tmp_path, monkeypatch, capsys, lesson,
                                                      file, task):  # fmt: skip
    page = f"docs/lessons/{lesson}.md#task-{task.replace('.', '-')}"
    stub = f'raise NotImplementedError("Task {task} not started ({page})")\n'
    copy = _learner_copy(tmp_path, {(lesson, file): (task, stub)})
    monkeypatch.chdir(copy)
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"Task {task}" in err and page in err
    assert not out.exists()  # stopped before any training, nothing left behind
