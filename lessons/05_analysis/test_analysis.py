"""Graded tests for lesson 05: comparing runs (tasks 5.1 - 5.5), on results files made here
in the format ``alexnet-course compare`` writes.

Each test has two halves: an ``_observe_*`` function that calls your code and returns data
only (arrays, numbers, the table or analysis text, the plotted values and the PNG's bytes
and pixels), and the test itself, which checks that data.
"""

import importlib
import json
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
# The draws are the test process's alone: the grader's worker, which sees only the observe
# halves (alexnet_course.grading.views), has no copy of alexnet_course.grading.draws.
draws = importlib.import_module("alexnet_course.grading.draws")
drawn = draws.drawn
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

# ---------------------------------------------------------------- drawn comparisons
# Results drawn as the runner writes them: any subset of the five arms, in any order (not
# alphabetical, not best-first), each "ok", "skipped" or "failed", histories of 1 to 6
# epochs whose four fields all differ. Hypothesis draws the structure (which arms, their
# order and status, the number of epochs: what a failure shrinks); the numbers come from a
# drawn seed. Accuracies are multiples of 1/1000 (1/10000 in the table) and times
# multiples of 6 s plus 0, 1 or 2 s: no printed number sits on a rounding boundary, so
# every correct way of computing it prints the same digits.
ARMS = ("torch-scratch", "torch-tv-scratch", "torch-pretrained", "keras-scratch",
        "keras-pretrained")  # fmt: skip
REASONS = {"skipped": ("no cached weights", "TensorFlow is not installed",
                       "the budget has no time left for this arm"),
           "failed": ("RuntimeError: CUDA out of memory", "ValueError: the loss is NaN at epoch 2")}  # fmt: skip
SEEDS = st.integers(0, 2**32 - 1)
STATUSES = st.sampled_from(("ok", "skipped", "failed"))
EPOCHS = st.integers(1, 6)


def history(rng, n: int) -> dict:
    """Four per-epoch lists of ``n`` values, no value in two of them (so no field can stand
    in for another, and no gap is exactly 0)."""
    values = rng.choice(1001, 4 * n, replace=False) / 1000
    keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    return {k: [float(v) for v in values[i * n : (i + 1) * n]] for i, k in enumerate(keys)}


@st.composite
def comparisons(draw, min_ok=0, fine=1000):
    """Results of 1 to 5 arms, in a drawn order, with distinct test accuracies (multiples of
    ``1 / fine``), at least ``min_ok`` of them "ok"."""
    arms = draw(st.permutations(ARMS))[: draw(st.integers(max(min_ok, 1), 5))]
    status = draw(st.lists(STATUSES, min_size=len(arms), max_size=len(arms)))
    status = ["ok"] * min_ok + status[min_ok:]
    epochs = draw(st.lists(EPOCHS, min_size=len(arms), max_size=len(arms)))
    rng = np.random.default_rng(draw(SEEDS))
    accs = rng.choice(fine + 1, len(arms), replace=False)
    out = []
    for arm, s, acc, n in zip(arms, status, accs, epochs):
        if s == "ok":
            seconds = 6 * int(rng.integers(0, 6000)) + int(rng.integers(0, 3))
            out.append({"arm": arm, "status": "ok", "test_accuracy": int(acc) / fine,
                        "train_seconds": float(seconds), "history": history(rng, n)})  # fmt: skip
        else:
            out.append({"arm": arm, "status": s, "reason": str(rng.choice(REASONS[s]))})
            if s == "failed":
                out[-1]["traceback"] = "Traceback (most recent call last): ..."
    return out


def reference_gap(res) -> float:
    h = res["history"]
    return h["train_accuracy"][-1] - h["val_accuracy"][-1]


def reference_gain(results):
    """(gain, None), or (None, the arms that did not run) when it cannot be computed."""
    ok = {r["arm"]: r for r in results if r["status"] == "ok"}
    missing = [a for a in ("torch-pretrained", "torch-tv-scratch") if a not in ok]
    if missing:
        return None, missing
    return ok["torch-pretrained"]["test_accuracy"] - ok["torch-tv-scratch"]["test_accuracy"], None


# ---------------------------------------------------------------- task 5.1
def _observe_metrics(y_true, y_pred, num_classes, cm, skew):
    got = an.confusion_matrix(y_true, y_pred, num_classes)
    return {"cm": got, "cm_dtype": str(np.asarray(got).dtype),
            "acc": an.per_class_accuracy(cm), "skew": an.per_class_accuracy(skew)}  # fmt: skip


def _expect_integer_counts(dtype: str, what: str) -> None:
    expect(np.issubdtype(np.dtype(dtype), np.integer), f"{what}: dtype", "an integer dtype "
           "(counts)", dtype, hint="count in an array of an integer dtype (numpy's zeros default to "
           "float64): a float matrix holds 3.0 where the page asks for a count",
           docs=docs("5.1"))  # fmt: skip


@pytest.mark.task("5.1", points=2)
def test_confusion_matrix_and_per_class_accuracy():
    y_true = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    y_pred = [0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1]
    want = [[3, 1, 0], [0, 3, 1], [1, 1, 2]]
    skew = np.array([[5, 0], [5, 0]])  # every sample predicted as class 0
    o = observe(_observe_metrics, y_true, y_pred, 3, np.array(want), skew)
    expect_equal(np.asarray(o["cm"]).tolist(), want, "confusion matrix (rows: true class, "
                 "columns: predicted)", hint="cm[t, p] counts true class t predicted as p; "
                 "a repeated (t, p) pair counts each time", docs=docs("5.1"))  # fmt: skip
    _expect_integer_counts(o["cm_dtype"], "confusion matrix")
    expect_close(o["acc"], [0.75, 0.75, 0.5], "per-class accuracy (diagonal over row sums) of "
                 f"{want}", atol=1e-9, hint="each diagonal entry over its ROW's sum",
                 docs=docs("5.1"))  # fmt: skip
    expect_close(o["skew"], [1.0, 0.0], "per-class accuracy when everything is predicted as "
                 "class 0", atol=1e-9,
                 hint="divide by the number of samples of the TRUE class (row sums)",
                 docs=docs("5.1"))  # fmt: skip


def _observe_drawn_metrics(y_true, y_pred, num_classes, cm):
    got = an.confusion_matrix(y_true, y_pred, num_classes)
    return {"cm": got, "cm_dtype": str(np.asarray(got).dtype),
            "acc": an.per_class_accuracy(cm)}  # fmt: skip


@st.composite
def predictions(draw):
    """Labels of ``num_classes`` classes (1 to 12), some absent, unbalanced, in any order."""
    k = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(SEEDS))
    present = np.sort(rng.choice(k, draw(st.integers(1, k)), replace=False))
    n = draw(st.integers(1, 40))
    weights = rng.dirichlet(np.ones(len(present)))  # unbalanced
    y_true = [int(v) for v in rng.choice(present, n, p=weights)]
    return y_true, [int(v) for v in rng.integers(0, k, n)], k


@pytest.mark.task("5.1", points=1)
@drawn(examples=15)
@given(case=predictions())
def test_metrics_on_drawn_predictions(case):
    """Any number of classes, some never seen, unbalanced: the matrix is sized by
    num_classes, and a class with no sample has no accuracy (NaN, not 0)."""
    y_true, y_pred, k = case
    want = np.zeros((k, k), dtype=np.int64)
    np.add.at(want, (np.asarray(y_true), np.asarray(y_pred)), 1)
    o = observe(_observe_drawn_metrics, y_true, y_pred, k, want)
    cm = np.asarray(o["cm"])
    expect_equal(cm.shape, (k, k), f"confusion matrix shape with num_classes={k}, classes "
                 f"{sorted(set(y_true))} present", hint="size it by num_classes: a class may be "
                 "absent from both lists", docs=docs("5.1"))  # fmt: skip
    expect_equal(cm.tolist(), want.tolist(), f"confusion matrix of y_true={y_true}, "
                 f"y_pred={y_pred}", hint="cm[t, p] counts true class t predicted as p",
                 docs=docs("5.1"))  # fmt: skip
    _expect_integer_counts(o["cm_dtype"], f"confusion matrix with num_classes={k}")
    rows = want.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(rows > 0, np.diag(want) / rows, np.nan)
    got = np.asarray(o["acc"], dtype=np.float64)
    expect_equal(got.shape, acc.shape, "per-class accuracy: one value per class",
                 hint="one value per row of the matrix", docs=docs("5.1"))  # fmt: skip
    expect(np.array_equal(np.isnan(got), np.isnan(acc)), f"per-class accuracy of {want.tolist()}: "
           "classes without a sample", f"NaN exactly for the classes {np.flatnonzero(rows == 0).tolist()}",
           f"NaN for {np.flatnonzero(np.isnan(got)).tolist()}", hint="a class with no sample "
           "has no accuracy: NaN, never 0 (which would read as 'always wrong')",
           docs=docs("5.1"))  # fmt: skip
    seen = rows > 0
    expect_close(got[seen], acc[seen], f"per-class accuracy of {want.tolist()} (classes with "
                 "samples)", atol=1e-9, hint="each diagonal entry over its own ROW's sum: the "
                 "classes have different sizes here", docs=docs("5.1"))  # fmt: skip


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


@pytest.mark.task("5.2", points=2)
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


def _observe_drawn_table(results):
    return an.comparison_table(results)


@pytest.mark.task("5.2", points=1)
@drawn(examples=15)
@given(results=comparisons(fine=10000))
def test_comparison_table_of_drawn_results(results):
    """Arms in any order and every status: best first whatever the order given (which is
    neither alphabetical nor best-first here), a failed arm as 'not run' like a skipped one."""
    ran = sorted((r for r in results if r["status"] == "ok"), key=lambda r: -r["test_accuracy"])
    want_ran = [f"| {r['arm']} | {100 * r['test_accuracy']:.2f}% | {r['train_seconds'] / 60:.1f} min |"
                for r in ran]  # fmt: skip
    want_rest = sorted(f"| {r['arm']} | not run: {r['reason']} | - |"
                       for r in results if r["status"] != "ok")  # fmt: skip
    given_order = [(r["arm"], r["status"]) for r in results]
    table = observed(_observe_drawn_table, results, what=f"comparison_table of arms {given_order}",
                     hint="an arm is 'ok', 'skipped' or 'failed' (as the runner writes them); "
                     "only an 'ok' arm has test_accuracy and train_seconds", docs=docs("5.2"))  # fmt: skip
    expect(isinstance(table, str), "comparison_table's result", "a str (Markdown)",
           type(table).__name__, hint="join the table's lines with newlines", docs=docs("5.2"))  # fmt: skip
    lines = table.strip().splitlines()
    expect_equal(lines[:2], ["| arm | test accuracy | training time |", "| --- | --- | --- |"],
                 "table header", hint="exactly these two lines first", docs=docs("5.2"))  # fmt: skip
    expect_equal(lines[2 : 2 + len(ran)], want_ran, f"rows of the arms that ran, given in the "
                 f"order {given_order}", hint="sort by test accuracy, best first, whatever order "
                 "the results come in", docs=docs("5.2"))  # fmt: skip
    expect_equal(sorted(lines[2 + len(ran) :]), want_rest, "rows of the arms that did not run "
                 "(skipped or failed), after those that ran", hint="'not run: <reason>' and '-' "
                 "for every arm whose status is not 'ok', failed ones too", docs=docs("5.2"))  # fmt: skip


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


def _panel_geometry(fig, ax) -> dict:
    """Where a panel and its legend lie, as fractions of the figure (x0, y0, x1, y1 from the
    bottom left), and the colour each line is drawn in (RGB in [0, 1], with its alpha)."""
    from matplotlib.colors import to_rgba

    box = fig.bbox
    if not hasattr(fig.canvas, "get_renderer"):  # closed after saving, or made without pyplot
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()

    def frac(b):
        return [b.x0 / box.width, b.y0 / box.height, b.x1 / box.width, b.y1 / box.height]

    legend = ax.get_legend()
    colours = []
    for line in ax.get_lines():
        r, g, b, a = to_rgba(line.get_color(), line.get_alpha())
        colours.append([r, g, b, a])
    return {"frac": frac(ax.get_window_extent(renderer)), "colours": colours,
            "legend": None if legend is None else {
                "visible": bool(legend.get_visible()),
                "texts": [t.get_text() for t in legend.get_texts()],
                "frac": frac(legend.get_window_extent(renderer))}}  # fmt: skip


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
        panels = [_panel_geometry(fig, ax) for ax in axes]
        png = path.read_bytes() if path.is_file() else None
        pixels = None
        if png is not None and png.startswith(PNG_SIGNATURE):
            pixels = np.round(255 * matplotlib.image.imread(path)).astype(np.uint8)
        if hasattr(fig, "get_axes"):
            plt.close(fig)
        size = [float(fig.bbox.width), float(fig.bbox.height)] if panels else None
        return {"lines": lines, "png": png, "pixels": pixels, "panels": panels, "size": size}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _png_size(png: bytes) -> tuple:
    """(height, width) from a PNG's header chunk."""
    width, height = struct.unpack(">II", png[16:24])
    return height, width


def _on_white(pixels) -> np.ndarray:
    """The PNG's pixels as RGB in [0, 255], a transparent background seen on white."""
    px = np.asarray(pixels, dtype=np.float64)
    if px.ndim == 2:
        px = np.repeat(px[..., None], 3, axis=2)
    if px.shape[-1] == 4:
        alpha = px[..., 3:] / 255
        px = px[..., :3] * alpha + 255 * (1 - alpha)
    return px[..., :3]


def _colour_pixels(rgb, colour, region=None) -> int:
    """How many pixels of ``rgb`` (inside ``region``, fractions of the image from the bottom
    left) show ``colour`` (RGBA in [0, 1], seen on white), within 24 levels per channel, or
    cover at least half of the pixel on white: a line thinner than two pixels (a file saved
    at a low dpi) is antialiased across two rows and may fill none of them whole."""
    if region is not None:
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = region
        rows = slice(max(int(np.floor(h * (1 - y1))), 0), int(np.ceil(h * (1 - y0))))
        rgb = rgb[rows, max(int(np.floor(w * x0)), 0) : int(np.ceil(w * x1))]
    r, g, b, a = colour
    want = 255 * (a * np.array([r, g, b]) + (1 - a))
    ink = want - 255.0  # from white to the colour
    if float(ink @ ink) < 48**2:  # a colour close to white: no blend to speak of
        return int((np.abs(rgb - want) <= 24).all(axis=-1).sum())
    cover = np.clip(((rgb - 255.0) @ ink) / float(ink @ ink), 0.5, 1.0)  # how much of the pixel
    return int((np.abs(rgb - (255.0 + cover[..., None] * ink)) <= 24).all(axis=-1).sum())


def _check_curves(res, o):
    """The checks of task 5.3 on what ``_observe_curves`` saw of ``res``'s figure."""
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
    h = res["history"]
    want = {(0, "train"): h["train_loss"], (0, "val"): h["val_loss"],
            (1, "train"): h["train_accuracy"], (1, "val"): h["val_accuracy"]}  # fmt: skip
    expect_equal(data, want, f"plotted lines (panel, name: its label or its legend text) -> "
                 f"values, for a history of {len(h['val_loss'])} epoch(s)",
                 hint="two lines per panel, named 'train' and 'val', and nothing else",
                 docs=docs("5.3"))  # fmt: skip
    epochs = list(range(1, len(h["val_loss"]) + 1))
    expect_equal([line["x"] for ax in lines for line in ax], [epochs] * 4,
                 "epochs on the x axis of every line (from 1)",
                 hint="pass the epoch numbers 1..n as x: plot(y) alone numbers from 0",
                 docs=docs("5.3"))  # fmt: skip
    panels = o["panels"]
    for name, panel in zip(("loss", "accuracy"), panels):
        legend = panel["legend"]
        expect(legend is not None and legend["visible"] and sorted(legend["texts"]) == ["train", "val"],
               f"the {name} panel's legend", "a legend showing 'train' and 'val'",
               "no legend" if legend is None else legend["texts"],
               hint="each panel gets a legend: the reader of the PNG sees no labels otherwise",
               docs=docs("5.3"))  # fmt: skip
    # the saved file, read back: every line's colour in its panel (a PNG saved before the
    # lines were drawn shows empty axes) and in its legend (one saved before the legend)
    seen = _on_white(pixels)
    height, width = seen.shape[:2]
    fw, fh = o["size"]
    # a file of the whole figure (at any dpi) is read region by region; a cropped one
    # (bbox_inches="tight") as a whole
    whole_figure = abs(width / height - fw / fh) < 0.01
    for name, panel in zip(("loss", "accuracy"), panels):
        regions = [("panel", panel["frac"]), ("legend", panel["legend"]["frac"])]
        for where, region in regions:
            region = region if whole_figure else None
            if where == "panel" and len(epochs) < 2:  # one point and no marker: nothing drawn
                continue
            for colour, line in zip(panel["colours"], ("first", "second")):
                found = _colour_pixels(seen, colour, region)
                expect(found >= 3, f"the saved PNG: the {name} panel's {line} line in its {where}",
                       f"pixels of its colour {np.round(np.array(colour[:3]) * 255).astype(int).tolist()}",
                       f"{found} pixel(s): the {where} is empty in the file",
                       hint="save the figure after drawing everything (lines and legends), "
                       "and save the whole figure", docs=docs("5.3"))  # fmt: skip


@pytest.mark.task("5.3", points=2)
@drawn(examples=1)  # a figure costs a third of a second: one draw, its values from the seed
@given(epochs=st.integers(2, 6), seed=SEEDS, arm=st.sampled_from(ARMS))
def test_learning_curves_plot(epochs, seed, arm):
    """A history of 2 to 6 epochs whose four fields all differ (its values drawn from the
    grader's seed too): each line by its values, the legends, and the PNG file read back."""
    rng = np.random.default_rng([seed, draws.current_seed()])
    res = {"arm": arm, "status": "ok", "test_accuracy": 0.5, "train_seconds": 60.0,
           "history": history(rng, epochs)}  # fmt: skip
    _check_curves(res, observe(_observe_curves, res))


# ---------------------------------------------------------------- task 5.4
def _observe_gap_and_gain(res, results):
    return {"gap": an.overfitting_gap(res), "gain": an.pretraining_gain(results)}


def _observe_gain(results):
    return an.pretraining_gain(results)


@pytest.mark.task("5.4", points=1)
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


def _observe_drawn_gap_and_gain(res, results):
    gap = an.overfitting_gap(res)
    try:
        return {"gap": gap, "gain": an.pretraining_gain(results)}
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - the check judges the error's type and message
        return {"gap": gap, "error": type(e).__name__, "message": str(e)[:300],
                "is_value_error": isinstance(e, ValueError)}  # a subclass is one too


@pytest.mark.task("5.4", points=1)
@drawn(examples=15)
@given(epochs=EPOCHS, seed=SEEDS, results=comparisons())
def test_gap_and_gain_of_drawn_results(epochs, seed, results):
    """Histories of 1 to 6 epochs; comparisons whose two arms are ok, skipped, failed or
    absent, in any order: the gain, or the ValueError naming an arm that did not run."""
    h = history(np.random.default_rng(seed), epochs)
    o = observe(_observe_drawn_gap_and_gain, {"arm": "torch-scratch", "status": "ok",
                                              "history": h}, results)  # fmt: skip
    expect_close(o["gap"], h["train_accuracy"][-1] - h["val_accuracy"][-1], "overfitting gap "
                 f"of {len(h['val_accuracy'])} epochs: train {h['train_accuracy']}, val "
                 f"{h['val_accuracy']}", atol=1e-9, hint="the LAST epoch's training accuracy "
                 "minus its validation accuracy, whatever the number of epochs",
                 docs=docs("5.4"))  # fmt: skip
    gain, missing = reference_gain(results)
    arms = [(r["arm"], r["status"]) for r in results]
    if missing is None:
        expect("gain" in o, f"pretraining_gain of {arms}", "a number",
               f"{o.get('error')}: {o.get('message')}", hint="both arms ran: no error",
               docs=docs("5.4"))  # fmt: skip
        expect_close(o["gain"], gain, f"pretraining gain of {arms}", atol=1e-9,
                     hint="torch-pretrained's test accuracy minus torch-tv-scratch's, found by "
                     "name whatever the order", docs=docs("5.4"))  # fmt: skip
        return
    what = f"pretraining_gain of {arms}, where {' and '.join(missing)} did not run"
    expect(bool(o.get("is_value_error")), what, "raises ValueError",
           f"raised {o['error']}: {o['message']}" if "error" in o else f"returned {o.get('gain')!r}",
           hint="an arm missing, skipped or failed has no accuracy: raise ValueError naming "
           "it (never a KeyError, never 0)", docs=docs("5.4"))  # fmt: skip
    expect(any(a in o["message"] for a in missing), "the ValueError's message",
           f"names {' or '.join(missing)}", o["message"][:200], hint="say which arm did not run",
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


@pytest.mark.task("5.5", points=1)
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


@pytest.mark.task("5.5", points=1)
@drawn(examples=15)
@given(results=comparisons(min_ok=1))
def test_written_analysis_of_drawn_results(results):
    """Any arms in any order and status: the arm that overfits most and its gap, the gain or
    (when an arm did not run) that arm's name and no gain, never an error."""
    ran = [r for r in results if r["status"] == "ok"]
    gaps = {r["arm"]: reference_gap(r) for r in ran}
    worst = [a for a, g in gaps.items() if g == max(gaps.values())]
    gap = f"{100 * max(gaps.values()):.1f}"
    arms = [(r["arm"], r["status"]) for r in results]
    text = _analysis_text(results, f"analysis of {arms}")
    written = set(re.findall(r"(?<![\w.])(-?\d+\.\d) percentage points", text))
    expect(any(a in text for a in worst), f"analysis of {arms}: the arm that overfits most",
           f"names {' or '.join(worst)} (gaps {gaps})", text[:300], hint="the largest "
           "overfitting_gap among the arms that ran", docs=docs("5.5"))  # fmt: skip
    expect(gap in written, f"analysis of {arms}: the largest overfitting gap",
           f"'{gap} percentage points'", text[:300],
           hint="100 times overfitting_gap, with one decimal, in percentage points",
           docs=docs("5.5"))  # fmt: skip
    gain, missing = reference_gain(results)
    if missing is None:
        want = f"{100 * gain:.1f}"
        expect(want in written, f"analysis of {arms}: the pretraining gain",
               f"'{want} percentage points'", text[:300],
               hint="100 times pretraining_gain, with one decimal and its sign (a negative "
               "gain is written -3.2 percentage points), in percentage points",
               docs=docs("5.5"))  # fmt: skip
        return
    expect(any(a in text for a in missing), f"analysis of {arms}: the arm that did not run",
           f"named ({' or '.join(missing)})", text[:300], hint="say that the gain was not "
           "measured, and which arm did not run", docs=docs("5.5"))  # fmt: skip
    ok = {r["arm"]: r["test_accuracy"] for r in ran}
    as_zero = {f"{100 * (ok.get('torch-pretrained', 0.0) - ok.get('torch-tv-scratch', 0.0)):.1f}"}
    expect(not (as_zero - {gap}) & written, f"analysis of {arms}: the gain", "no number "
           "(not measured)", text[:300], hint="an arm that did not run has no accuracy: never "
           "count it as 0%", docs=docs("5.5"))  # fmt: skip
