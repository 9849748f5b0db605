"""Comparing the runs: metrics from predictions, the comparison table, plots, and what the
numbers say.

``alexnet-course compare`` writes one ``results.json`` per arm (test accuracy, per-class
accuracy, confusion matrix, per-epoch history, training time, provenance). Here you turn
such files into the comparison, the way the course's report does, and answer two
questions with numbers: how much does each arm overfit, and what does pretraining buy?
"""
# Your file for lesson 05_analysis: fill in every TODO, then run `pytest lessons/05_analysis`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Task 5.1: ``cm[t, p]`` = number of samples of true class t predicted as p (int64)."""
    # TODO: Task 5.1 -- see docs/lessons/05_analysis.md#task-5-1
    raise NotImplementedError("Task 5.1 not started (docs/lessons/05_analysis.md#task-5-1)")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Task 5.1: the diagonal over each ROW's sum (the samples of that true class); NaN for a
    class with no sample."""
    # TODO: Task 5.1 -- see docs/lessons/05_analysis.md#task-5-1
    raise NotImplementedError("Task 5.1 not started (docs/lessons/05_analysis.md#task-5-1)")


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
    # TODO: Task 5.2 -- see docs/lessons/05_analysis.md#task-5-2
    raise NotImplementedError("Task 5.2 not started (docs/lessons/05_analysis.md#task-5-2)")


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

    # TODO: Task 5.3 -- see docs/lessons/05_analysis.md#task-5-3
    raise NotImplementedError("Task 5.3 not started (docs/lessons/05_analysis.md#task-5-3)")


def overfitting_gap(result: dict) -> float:
    """Task 5.4: last epoch's training accuracy minus its validation accuracy (positive when
    the model does better on what it trained on)."""
    # TODO: Task 5.4 -- see docs/lessons/05_analysis.md#task-5-4
    raise NotImplementedError("Task 5.4 not started (docs/lessons/05_analysis.md#task-5-4)")


def pretraining_gain(results: list[dict]) -> float:
    """Task 5.4: test accuracy of ``torch-pretrained`` minus that of ``torch-tv-scratch``:
    the same architecture, budget and data, so the difference is what ImageNet pretraining
    buys. Raises ``ValueError`` naming the missing arm when either did not run."""
    # TODO: Task 5.4 -- see docs/lessons/05_analysis.md#task-5-4
    raise NotImplementedError("Task 5.4 not started (docs/lessons/05_analysis.md#task-5-4)")


def analysis(results: list[dict]) -> str:
    """Task 5.5: your analysis of ``results``, in a few sentences (at least 300 characters):
    which arm overfits most (name it, with its :func:`overfitting_gap` in percentage points,
    written like "11.0 percentage points"), what pretraining buys (:func:`pretraining_gain`,
    also in percentage points), and one change you would try next, and why. When the gain
    cannot be computed (an arm did not run), say so and name that arm: never raise. Compute
    the numbers from ``results``: the test runs your function on results it made up.
    """
    # TODO: Task 5.5 -- see docs/lessons/05_analysis.md#task-5-5
    raise NotImplementedError("Task 5.5 not started (docs/lessons/05_analysis.md#task-5-5)")
