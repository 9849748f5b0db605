"""Graded tests for lesson 05: comparing runs (tasks 5.1 - 5.5), on results files made here
in the format ``alexnet-course compare`` writes.

Each test has two halves: an ``_observe_*`` function that calls your code and returns data
only (arrays, numbers, the table or analysis text, the plotted values and the PNG's bytes
and pixels), and the test itself, which checks that data.
"""

import json
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from alexnet_course.grading import learner
from alexnet_course.grading.checks import (
    expect,
    expect_close,
    expect_equal,
    expect_raises,
    observed,
)
from alexnet_course.grading.remote import observe

an = learner.load(__file__, "analysis")
DOCS = "docs/lessons/05_analysis.md"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    result("torch-pretrained", 0.8302, 20.0, [0.6, 0.8, 0.93], [0.7, 0.86, 0.84]),
    result("keras-pretrained", 0.0, 0, [], [], status="skipped"),
    result("torch-tv-scratch", 0.5811, 11.0, [0.3, 0.45, 0.62], [0.33, 0.5, 0.57]),
]
# a second comparison with other numbers and another arm overfitting most: the analysis must
# come from the results it is given
OTHER = [
    result("torch-scratch", 0.7034, 30.0, [0.4, 0.6, 0.74], [0.42, 0.6, 0.69]),
    result("torch-pretrained", 0.8877, 41.5, [0.7, 0.9, 0.99], [0.8, 0.86, 0.88]),
    result("torch-tv-scratch", 0.6650, 28.0, [0.35, 0.5, 0.7], [0.36, 0.55, 0.66]),
    result("keras-scratch", 0.6402, 33.0, [0.4, 0.7, 0.88], [0.41, 0.6, 0.65]),
]


# ---------------------------------------------------------------- task 5.1
def _observe_metrics(y_true, y_pred, num_classes, cm, skew):
    return {"cm": an.confusion_matrix(y_true, y_pred, num_classes),
            "acc": an.per_class_accuracy(cm), "skew": an.per_class_accuracy(skew)}  # fmt: skip


@pytest.mark.task("5.1", points=3)
def test_confusion_matrix_and_per_class_accuracy():
    y_true = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    y_pred = [0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1]
    want = [[3, 1, 0], [0, 3, 1], [1, 1, 2]]
    skew = np.array([[5, 0], [5, 0]])  # every sample predicted as class 0
    o = observe(_observe_metrics, y_true, y_pred, 3, np.array(want), skew)
    expect_equal(np.asarray(o["cm"]).tolist(), want, "confusion matrix (rows: true class, "
                 "columns: predicted)", hint="cm[t, p] counts true class t predicted as p; "
                 "a repeated (t, p) pair counts each time", docs=docs("5.1"))  # fmt: skip
    expect_close(o["acc"], [0.75, 0.75, 0.5], "per-class accuracy (diagonal over row sums) of "
                 f"{want}", atol=1e-9, hint="each diagonal entry over its ROW's sum",
                 docs=docs("5.1"))  # fmt: skip
    expect_close(o["skew"], [1.0, 0.0], "per-class accuracy when everything is predicted as "
                 "class 0", atol=1e-9,
                 hint="divide by the number of samples of the TRUE class (row sums)",
                 docs=docs("5.1"))  # fmt: skip


# ---------------------------------------------------------------- task 5.2
def _observe_table(files):
    folder = tempfile.mkdtemp(prefix="results-")
    try:
        for arm, data in files.items():
            (Path(folder) / arm).mkdir()
            (Path(folder) / arm / "results.json").write_bytes(data)
        return an.comparison_table(an.load_results(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _files(results):
    return {r["arm"]: json.dumps(r).encode() for r in results}


@pytest.mark.task("5.2", points=3)
def test_comparison_table_from_results_files():
    table = observe(_observe_table, _files(RESULTS))
    expect(isinstance(table, str), "comparison_table's result", "a str (Markdown)",
           type(table).__name__, hint="join the table's lines with newlines",
           docs=docs("5.2"))  # fmt: skip
    lines = table.strip().splitlines()
    expect_equal(lines[:2], ["| arm | test accuracy | training time |", "| --- | --- | --- |"],
                 "table header", hint="exactly these two lines first", docs=docs("5.2"))  # fmt: skip
    want = ["| torch-pretrained | 83.02% | 20.0 min |", "| torch-scratch | 61.23% | 12.5 min |",
            "| torch-tv-scratch | 58.11% | 11.0 min |",
            "| keras-pretrained | not run: no cached weights | - |"]  # fmt: skip
    expect_equal(lines[2:], want, "table rows (best first; arms that did not run last)",
                 hint="accuracy x 100 with 2 decimals and '%', train_seconds / 60 with 1 "
                 "decimal and ' min'; 'not run: <reason>' and '-' for an arm that did not run",
                 docs=docs("5.2"))  # fmt: skip


# ---------------------------------------------------------------- task 5.3
def _values(seq):
    try:
        return [float(v) for v in np.asarray(seq, dtype=np.float64).ravel()]
    except (TypeError, ValueError):
        return [repr(v)[:40] for v in seq]


def _line_names(ax) -> list[str]:
    """The name each line of a panel shows: the texts of the panel's legend, paired in order
    with the lines it covers (those with a label of their own, else every line, as
    ``ax.legend(["train", "val"])`` pairs them), or each line's own label without a legend."""
    lines = ax.get_lines()
    names = [str(line.get_label()) for line in lines]
    legend = ax.get_legend()
    if legend is None:
        return names
    texts = [t.get_text() for t in legend.get_texts()]
    covered = [i for i, n in enumerate(names) if not n.startswith("_")] or list(range(len(lines)))
    for i, text in zip(covered, texts):
        names[i] = text
    return names


def _observe_curves(res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image
    import matplotlib.pyplot as plt

    folder = tempfile.mkdtemp(prefix="curves-")
    path = Path(folder) / "curves.png"
    try:
        fig = an.plot_learning_curves(res, path)
        axes = fig.get_axes() if hasattr(fig, "get_axes") else []
        lines = [[{"label": name, "x": _values(line.get_xdata()), "y": _values(line.get_ydata())}
                  for line, name in zip(ax.get_lines(), _line_names(ax))]
                 for ax in axes]  # fmt: skip
        png = path.read_bytes() if path.is_file() else None
        pixels = None
        if png is not None and png.startswith(PNG_SIGNATURE):
            pixels = np.round(255 * matplotlib.image.imread(path)).astype(np.uint8)
        if hasattr(fig, "get_axes"):
            plt.close(fig)
        return {"lines": lines, "png": png, "pixels": pixels}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _png_size(png: bytes) -> tuple:
    """(height, width) from a PNG's header chunk."""
    width, height = struct.unpack(">II", png[16:24])
    return height, width


@pytest.mark.task("5.3", points=2)
def test_learning_curves_plot():
    o = observe(_observe_curves, RESULTS[0])
    png = o["png"]
    expect(png is not None, "the figure file", "written to the path given", "missing",
           hint="save the figure to path before returning it", docs=docs("5.3"))  # fmt: skip
    expect(png[:8] == PNG_SIGNATURE and len(png) > 24, "the figure file", "a PNG image",
           f"{len(png)} bytes starting {png[:8]!r}", hint="save the figure at the path given "
           "(a .png path: matplotlib picks the format from it)",
           docs=docs("5.3"))  # fmt: skip
    pixels = o["pixels"]
    expect(pixels is not None and pixels.ndim == 3 and pixels.shape[:2] == _png_size(png),
           "the PNG's pixels", f"an image of {_png_size(png)} pixels (its header)",
           None if pixels is None else pixels.shape, hint="save a PNG image with savefig",
           docs=docs("5.3"))  # fmt: skip
    rgb = pixels.astype(np.int64)[..., :3] if pixels.shape[-1] >= 3 else pixels.astype(np.int64)
    colours = len(np.unique(rgb @ (256 ** np.arange(rgb.shape[-1]))))
    expect(colours > 2, "the PNG's pixels", "a drawn figure", f"{colours} colour(s): blank",
           hint="save after plotting, not before", docs=docs("5.3"))  # fmt: skip
    lines = o["lines"]
    expect_equal(len(lines), 2, "panels (loss, accuracy)",
                 hint="one row of two panels: loss on the left, accuracy on the right",
                 docs=docs("5.3"))  # fmt: skip
    data = {(i, line["label"]): line["y"] for i, ax in enumerate(lines) for line in ax}
    h = RESULTS[0]["history"]
    want = {(0, "train"): h["train_loss"], (0, "val"): h["val_loss"],
            (1, "train"): h["train_accuracy"], (1, "val"): h["val_accuracy"]}  # fmt: skip
    expect_equal(data, want, "plotted lines (panel, name: its label or its legend text) -> values",
                 hint="two lines per panel, named 'train' and 'val', and nothing else",
                 docs=docs("5.3"))  # fmt: skip
    xs = lines[0][0]["x"]
    expect_equal(xs, [1, 2, 3], "epochs on the x axis (from 1)",
                 hint="pass the epoch numbers 1..n as x: plot(y) alone numbers from 0",
                 docs=docs("5.3"))  # fmt: skip


# ---------------------------------------------------------------- task 5.4
def _observe_gap_and_gain(res, results):
    return {"gap": an.overfitting_gap(res), "gain": an.pretraining_gain(results)}


def _observe_gain(results):
    return an.pretraining_gain(results)


@pytest.mark.task("5.4", points=2)
def test_overfitting_gap_and_pretraining_gain():
    o = observe(_observe_gap_and_gain, RESULTS[1], RESULTS)
    h = RESULTS[1]["history"]
    expect_close(o["gap"], 0.93 - 0.84, "overfitting gap (final train minus final validation "
                 f"accuracy) of train {h['train_accuracy']}, val {h['val_accuracy']}",
                 atol=1e-9, hint="the LAST epoch's two accuracies, not the best ones",
                 docs=docs("5.4"))  # fmt: skip
    expect_close(o["gain"], 0.8302 - 0.5811, "pretraining gain (torch-pretrained minus "
                 "torch-tv-scratch test accuracy)", atol=1e-9,
                 hint="compare with torchvision's architecture from scratch, not lesson 03's",
                 docs=docs("5.4"))  # fmt: skip
    without = [r for r in RESULTS if r["arm"] != "torch-pretrained"]
    e = expect_raises(ValueError, lambda: observe(_observe_gain, without), "pretraining_gain "
                      "without a torch-pretrained result", hint="an arm that did not run has "
                      "no accuracy: raise, never count it as 0", docs=docs("5.4"))  # fmt: skip
    expect("torch-pretrained" in str(e), "the ValueError's message", "names the missing arm "
           "'torch-pretrained'", str(e)[:200], hint="say which arm is missing",
           docs=docs("5.4"))  # fmt: skip


# ---------------------------------------------------------------- task 5.5
# a comparison whose pretrained arm did not run (no ImageNet weights): no gain to report
NO_PRETRAINED = [
    result("torch-scratch", 0.6123, 12.46, [0.3, 0.5, 0.71], [0.35, 0.52, 0.6]),
    result("torch-pretrained", 0.0, 0, [], [], status="skipped"),
    result("torch-tv-scratch", 0.5811, 11.0, [0.3, 0.45, 0.62], [0.33, 0.5, 0.57]),
]


def _observe_analysis(results):
    return an.analysis(results)


def _analysis_text(results, what: str) -> str:
    text = observed(_observe_analysis, results, what=what, hint="when the gain cannot be "
                    "computed, say so and name the arm that did not run: never raise",
                    docs=docs("5.5"))  # fmt: skip
    expect(isinstance(text, str) and len(text) >= 300, f"{what}: length", ">= 300 characters",
           len(text) if isinstance(text, str) else type(text),
           hint="a few sentences, returned as one str", docs=docs("5.5"))  # fmt: skip
    return text


@pytest.mark.task("5.5", points=2)
def test_written_analysis_uses_the_numbers():
    for results, gain, (arm, gap) in ((RESULTS, "24.9", ("torch-scratch", "11.0")),
                                      (OTHER, "22.3", ("keras-scratch", "23.0"))):  # fmt: skip
        text = _analysis_text(results, "analysis(results)")
        expect(f"{gain} percentage points" in text, "analysis: the pretraining gain of these "
               "results", f"'{gain} percentage points'", text[:300],
               hint="compute it from the results given (pretraining_gain), never copy a number",
               docs=docs("5.5"))  # fmt: skip
        expect(arm in text, f"analysis: the arm that overfits most ({arm}, gap {gap} "
               "percentage points)", "named", text[:300],
               hint="the largest overfitting_gap among the arms that ran", docs=docs("5.5"))  # fmt: skip
        expect(f"{gap} percentage points" in text, f"analysis: {arm}'s overfitting gap, in "
               "percentage points with one decimal", f"'{gap} percentage points'", text[:300],
               hint="100 times overfitting_gap: a difference of two accuracies is in "
               "percentage points, not %", docs=docs("5.5"))  # fmt: skip


@pytest.mark.task("5.5", points=1)
def test_written_analysis_without_the_pretrained_arm():
    text = _analysis_text(NO_PRETRAINED, "analysis(results) when torch-pretrained did not run")
    expect("torch-pretrained" in text, "analysis without a torch-pretrained result: the arm "
           "that did not run", "named ('torch-pretrained')", text[:300],
           hint="say that the gain was not measured, and why", docs=docs("5.5"))  # fmt: skip
    counted_as_zero = [n for n in ("58.1", "-58.1") if f"{n} percentage points" in text]
    expect(not counted_as_zero, "analysis without a torch-pretrained result: the gain",
           "no number (not measured)", f"'{(counted_as_zero or [''])[0]} percentage points'",
           hint="an arm that did not run has no accuracy: never count it as 0%",
           docs=docs("5.5"))  # fmt: skip
    expect("11.0 percentage points" in text and "torch-scratch" in text, "analysis without a "
           "torch-pretrained result: the arm that overfits most and its gap",
           "'torch-scratch' and '11.0 percentage points'", text[:300],
           hint="the rest of the analysis does not need the pretrained arm", docs=docs("5.5"))  # fmt: skip
