"""Graded tests for lesson 05: comparing runs (tasks 5.1 - 5.5), on results files made here
in the format ``alexnet-course compare`` writes."""

import json

import numpy as np
import pytest

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal

an = learner.load(__file__, "analysis")
DOCS = "docs/lessons/05_analysis.md"


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def result(arm, acc, minutes, train_acc, val_acc, status="ok"):
    if status != "ok":
        return {"arm": arm, "status": status, "reason": "no cached weights"}
    return {"arm": arm, "status": "ok", "test_accuracy": acc, "train_seconds": 60 * minutes,
            "history": {"train_loss": [2.0, 1.5, 1.2], "val_loss": [1.9, 1.6, 1.5],
                        "train_accuracy": train_acc, "val_accuracy": val_acc}}  # fmt: skip


RESULTS = [
    result("torch-scratch", 0.6123, 12.46, [0.3, 0.5, 0.71], [0.35, 0.52, 0.6]),
    result("torch-pretrained", 0.8302, 20.0, [0.6, 0.8, 0.93], [0.7, 0.8, 0.84]),
    result("keras-pretrained", 0.0, 0, [], [], status="skipped"),
    result("torch-tv-scratch", 0.5811, 11.0, [0.3, 0.45, 0.62], [0.33, 0.5, 0.57]),
]


@pytest.mark.task("5.1", points=3)
def test_confusion_matrix_and_per_class_accuracy():
    y_true = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    y_pred = [0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1]
    cm = an.confusion_matrix(y_true, y_pred, 3)
    expect_equal(np.asarray(cm).tolist(), [[3, 1, 0], [0, 3, 1], [1, 1, 2]], "confusion matrix "
                 "(rows: true class, columns: predicted)", docs=docs("5.1"))  # fmt: skip
    expect_close(an.per_class_accuracy(cm), [0.75, 0.75, 0.5], "per-class accuracy (diagonal "
                 "over row sums)", atol=1e-9, docs=docs("5.1"))  # fmt: skip
    skew = np.array([[5, 0], [5, 0]])  # every sample predicted as class 0
    expect_close(an.per_class_accuracy(skew), [1.0, 0.0], "per-class accuracy when everything "
                 "is predicted as class 0", atol=1e-9,
                 hint="divide by the number of samples of the TRUE class (row sums)",
                 docs=docs("5.1"))  # fmt: skip


@pytest.mark.task("5.2", points=3)
def test_comparison_table_from_results_files(tmp_path):
    for r in RESULTS:
        (tmp_path / r["arm"]).mkdir()
        (tmp_path / r["arm"] / "results.json").write_text(json.dumps(r))
    loaded = an.load_results(tmp_path)
    table = an.comparison_table(loaded)
    lines = table.strip().splitlines()
    expect_equal(lines[:2], ["| arm | test accuracy | training time |", "| --- | --- | --- |"],
                 "table header", docs=docs("5.2"))  # fmt: skip
    want = ["| torch-pretrained | 83.02% | 20.0 min |", "| torch-scratch | 61.23% | 12.5 min |",
            "| torch-tv-scratch | 58.11% | 11.0 min |",
            "| keras-pretrained | not run: no cached weights | - |"]  # fmt: skip
    expect_equal(lines[2:], want, "table rows (best first; arms that did not run last)",
                 docs=docs("5.2"))  # fmt: skip


@pytest.mark.task("5.3", points=2)
def test_learning_curves_plot(tmp_path):
    path = tmp_path / "curves.png"
    fig = an.plot_learning_curves(RESULTS[0], path)
    expect(path.is_file(), "the figure file", str(path), "missing", docs=docs("5.3"))
    axes = fig.get_axes()
    expect_equal(len(axes), 2, "panels (loss, accuracy)", docs=docs("5.3"))
    data = {(i, line.get_label()): list(line.get_ydata()) for i, ax in enumerate(axes)
            for line in ax.get_lines()}  # fmt: skip
    h = RESULTS[0]["history"]
    want = {(0, "train"): h["train_loss"], (0, "val"): h["val_loss"],
            (1, "train"): h["train_accuracy"], (1, "val"): h["val_accuracy"]}  # fmt: skip
    expect_equal(data, want, "plotted lines (panel, label) -> values", docs=docs("5.3"))
    xs = list(axes[0].get_lines()[0].get_xdata())
    expect_equal(xs, [1, 2, 3], "epochs on the x axis (from 1)", docs=docs("5.3"))


@pytest.mark.task("5.4", points=2)
def test_overfitting_gap_and_pretraining_gain():
    expect_close(an.overfitting_gap(RESULTS[1]), 0.93 - 0.84, "overfitting gap (final train "
                 "minus final validation accuracy)", atol=1e-9, docs=docs("5.4"))  # fmt: skip
    expect_close(an.pretraining_gain(RESULTS), 0.8302 - 0.5811, "pretraining gain "
                 "(torch-pretrained minus torch-tv-scratch test accuracy)", atol=1e-9,
                 hint="compare with torchvision's architecture from scratch, not lesson 03's",
                 docs=docs("5.4"))  # fmt: skip
    with pytest.raises(ValueError, match="torch-pretrained"):
        an.pretraining_gain([r for r in RESULTS if r["arm"] != "torch-pretrained"])


@pytest.mark.task("5.5", points=2)
def test_written_analysis_uses_the_numbers():
    text = an.analysis(RESULTS)
    expect(isinstance(text, str) and len(text) >= 300, "analysis length", ">= 300 characters",
           len(text) if isinstance(text, str) else type(text), docs=docs("5.5"))  # fmt: skip
    expect("24.9 percentage points" in text, "analysis: the pretraining gain of these "
           "results", "'24.9 percentage points'", text[:200], docs=docs("5.5"))  # fmt: skip
    expect("torch-scratch" in text, "analysis: the arm that overfits most (torch-scratch, "
           "11.0 points)", "named", text[:200], docs=docs("5.5"))  # fmt: skip
