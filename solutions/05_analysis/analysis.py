"""Comparing the runs: metrics from predictions, the comparison table, plots, and what the
numbers say.

``alexnet-course compare`` writes one ``results.json`` per arm (test accuracy, per-class
accuracy, confusion matrix, per-epoch history, training time, provenance). Here you turn
such files into the comparison, the way the course's report does, and answer two
questions with numbers: how much does each arm overfit, and what does pretraining buy?
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Task 5.1: ``cm[t, p]`` = number of samples of true class t predicted as p (int64)."""
    ### BEGIN SOLUTION 5.1
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm
    ### END SOLUTION 5.1


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Task 5.1: the diagonal over each ROW's sum (the samples of that true class); NaN for a
    class with no sample."""
    ### BEGIN SOLUTION 5.1
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / rows, np.nan)
    ### END SOLUTION 5.1


def load_results(folder: str | Path) -> list[dict]:
    """Every ``<folder>/<arm>/results.json``, sorted by arm name. (Given.)"""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*/results.json"))]


def comparison_table(results: list[dict]) -> str:
    """Task 5.2: a Markdown table, one row per arm, best test accuracy first.

    Header ``| arm | test accuracy | training time |``, then ``| --- | --- | --- |``; an arm
    with status "ok" shows its accuracy as a percentage with 2 decimals ("61.23%") and its
    training time in minutes with 1 decimal ("12.5 min"); an arm that did not run
    (status "skipped" or "failed") comes last and shows ``not run: <reason>`` in the
    accuracy column and ``-`` as time. Never show a skipped arm as 0%.
    """
    ### BEGIN SOLUTION 5.2
    ok = sorted((r for r in results if r.get("status") == "ok"),
                key=lambda r: -r["test_accuracy"])  # fmt: skip
    rest = [r for r in results if r.get("status") != "ok"]
    lines = ["| arm | test accuracy | training time |", "| --- | --- | --- |"]
    for r in ok:
        lines.append(f"| {r['arm']} | {100 * r['test_accuracy']:.2f}% | "
                     f"{r['train_seconds'] / 60:.1f} min |")  # fmt: skip
    for r in rest:
        lines.append(f"| {r['arm']} | not run: {r.get('reason', r.get('status'))} | - |")
    return "\n".join(lines)
    ### END SOLUTION 5.2


def plot_learning_curves(result: dict, path: str | Path):
    """Task 5.3: two panels side by side, loss (left) and accuracy (right) against the epoch
    (1, 2, ...), each with a "train" and a "val" line labelled so and a legend that shows
    those names; saved to ``path`` once everything is drawn.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ### BEGIN SOLUTION 5.3
    h = result["history"]
    epochs = np.arange(1, len(h["val_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, h["train_loss"], label="train")
    ax_loss.plot(epochs, h["val_loss"], label="val")
    ax_acc.plot(epochs, h["train_accuracy"], label="train")
    ax_acc.plot(epochs, h["val_accuracy"], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{result['arm']}: loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{result['arm']}: accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
    fig.savefig(path)
    return fig
    ### END SOLUTION 5.3


def overfitting_gap(result: dict) -> float:
    """Task 5.4: last epoch's training accuracy minus its validation accuracy (positive when
    the model does better on what it trained on)."""
    ### BEGIN SOLUTION 5.4
    h = result["history"]
    return float(h["train_accuracy"][-1] - h["val_accuracy"][-1])
    ### END SOLUTION 5.4


def pretraining_gain(results: list[dict]) -> float:
    """Task 5.4: test accuracy of ``torch-pretrained`` minus that of ``torch-tv-scratch``:
    the same architecture, budget and data, so the difference is what ImageNet pretraining
    buys. Raises ``ValueError`` naming the missing arm when either did not run."""
    ### BEGIN SOLUTION 5.4
    by_arm = {r["arm"]: r for r in results if r.get("status") == "ok"}
    for arm in ("torch-pretrained", "torch-tv-scratch"):
        if arm not in by_arm:
            raise ValueError(f"{arm} did not run: no result to compare")
    return float(by_arm["torch-pretrained"]["test_accuracy"]
                 - by_arm["torch-tv-scratch"]["test_accuracy"])  # fmt: skip
    ### END SOLUTION 5.4


def analysis(results: list[dict]) -> str:
    """Task 5.5: your analysis of ``results``, in a few sentences (at least 300 characters):
    which arm overfits most (name it, with its :func:`overfitting_gap` in percentage points,
    written like "11.0 percentage points"), what pretraining buys (:func:`pretraining_gain`,
    also in percentage points), and one change you would try next, and why. When the gain
    cannot be computed (an arm did not run), say so and name that arm: never raise. Compute
    the numbers from ``results``: the test runs your function on results it made up.
    """
    ### BEGIN SOLUTION 5.5
    ok = [r for r in results if r.get("status") == "ok"]
    worst = max(ok, key=overfitting_gap)
    try:
        gain = (f"Pretraining buys {100 * pretraining_gain(results):.1f} percentage points of "
                "test accuracy: torch-pretrained and torch-tv-scratch share the architecture, "
                "data, augmentation and epoch budget, so the difference is the ImageNet "
                "features.")  # fmt: skip
    except ValueError as e:  # an arm did not run: no number to report
        gain = (f"What pretraining buys was not measured in this comparison ({e}): it needs "
                "torch-pretrained and torch-tv-scratch, trained alike.")  # fmt: skip
    return (
        f"{worst['arm']} overfits most: its training accuracy ends "
        f"{100 * overfitting_gap(worst):.1f} percentage points above its validation accuracy. "
        f"{gain} Next I would train the scratch arms longer with stronger augmentation, since "
        "their validation accuracy was still rising when the budget ran out."
    )
    ### END SOLUTION 5.5
