"""Figures and ``report.md`` from the comparison's results files (and nothing else)."""

from __future__ import annotations

import json
from pathlib import Path

SEED_ROWS = [  # the seed notebook's own figures, quoted as its record
    ("torch-pretrained", "82.18%", "new 10-class head, SGD lr 0.001, 2 epochs at 224 px"),
    ("torch-scratch", "58.93%", "96-256-384-384-256 with BatchNorm, 1 epoch"),
    ("keras-scratch", "59.3%", "raw 32x32 images"),
]


def commit_text(prov: dict) -> str:
    """``43e2850ff9``, or ``43e2850ff9 with uncommitted changes to 2 files (a.py, b.py)`` (the
    names where there are at most three), for reports."""
    changes = prov.get("git_uncommitted") or []
    names = [c.split(maxsplit=1)[-1] for c in changes]
    listed = f" ({', '.join(names)})" if len(names) <= 3 else ""
    return f"{prov.get('git_commit', '?')[:10]}" + (
        f" with uncommitted changes to {len(changes)} file{'s' * (len(changes) != 1)}{listed}"
        if changes else "")


def load_results(folder: Path) -> list[dict]:
    """Every ``*/results.json`` under ``folder``, in the runner's arm order."""
    from alexnet_course.compare.profiles import ARMS

    results = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*/results.json"))]
    return sorted(results, key=lambda r: ARMS.index(r["arm"]) if r.get("arm") in ARMS else len(ARMS))


# Figures are drawn for the site's content column (about 700 px at a 1280 px window): 7
# inches shown 700 px wide make a point 1.39 px, so the smallest text, 8 points, is 11 px.
# Every PNG records its smallest text and its width (MIN_TEXT_KEY, WIDTH_KEY), so that the
# site check can compute the smallest text at the width a page shows it (at least 10 px).
FIG_WIDTH = 7.0
DPI = 150
MIN_TEXT_KEY, WIDTH_KEY = "alexnet-course:min-text-px", "alexnet-course:width-px"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
                         "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9})
    return plt


def smallest_text_px(fig, dpi: float) -> float:
    """The smallest text of ``fig`` (a title, a label, a tick, a legend, a number in a
    cell), in pixels at ``dpi``."""
    from matplotlib.text import Text

    fig.canvas.draw()  # ticks exist only once drawn
    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]  # fmt: skip
    return min(sizes, default=0.0) * dpi / 72


def save_figure(fig, path: Path, dpi: int = DPI) -> None:
    """``fig`` as a PNG at ``dpi``, with its smallest text and width recorded in it."""
    px = smallest_text_px(fig, dpi)
    fig.savefig(path, dpi=dpi, metadata={MIN_TEXT_KEY: f"{px:.2f}",
                                         WIDTH_KEY: f"{fig.get_figwidth() * dpi:.0f}"})  # fmt: skip


def record_text_sizes():
    """While active, every figure saved as a PNG records its smallest text and width (for a
    figure drawn by lesson code, such as lesson 01's ``show_batch``)."""
    import contextlib

    from matplotlib.figure import Figure

    real = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        dpi = kwargs.get("dpi") or self.dpi
        if str(fname).endswith(".png"):
            meta = dict(kwargs.pop("metadata", None) or {})
            meta.setdefault(MIN_TEXT_KEY, f"{smallest_text_px(self, float(dpi)):.2f}")
            meta.setdefault(WIDTH_KEY, f"{self.get_figwidth() * float(dpi):.0f}")
            kwargs["metadata"] = meta
        return real(self, fname, *args, **kwargs)

    @contextlib.contextmanager
    def active():
        Figure.savefig = savefig
        try:
            yield
        finally:
            Figure.savefig = real

    return active()


ARM_COLOURS = {  # one colour per arm, in every figure (matplotlib's tab10)
    "torch-scratch": "tab:blue", "torch-tv-scratch": "tab:orange", "torch-pretrained": "tab:green",
    "keras-scratch": "tab:red", "keras-pretrained": "tab:purple",
}  # fmt: skip


def _colour(arm: str) -> str:
    return ARM_COLOURS.get(arm, "tab:gray")


def plot_learning_curves(results: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, one above the other: one colour per arm, training
    dashed, validation solid, the legend below. A run of one epoch has one point per curve:
    each is labelled with its value, on an axis that shows just that epoch."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, axes = plt.subplots(2, 1, figsize=(FIG_WIDTH, 6.4), sharex=True, layout="constrained")
    one = max((len(r["history"]["val_accuracy"]) for r in ok), default=0) == 1
    for r in ok:
        h, c = r["history"], _colour(r["arm"])
        ep = list(range(1, len(h["val_accuracy"]) + 1))
        curves = [(axes[0], h["train_loss"], "--"), (axes[0], h["val_loss"], "-")]
        if any(v is not None for v in h["train_accuracy"]):
            curves.append((axes[1], [100 * v for v in h["train_accuracy"]], "--"))
        curves.append((axes[1], [100 * v for v in h["val_accuracy"]], "-"))
        for ax, ys, style in curves:
            ax.plot(ep, ys, style, color=c, marker="o", ms=5 if one else 3)
            if one:
                ax.annotate(f"{ys[0]:.2f}", (ep[0], ys[0]), xytext=(6 if style == "-" else -6, 0),
                            textcoords="offset points", ha="left" if style == "-" else "right",
                            va="center", fontsize=9, color=c)  # fmt: skip
    axes[0].set(ylabel="loss", title="Loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        ax.grid(alpha=0.3)
        if one:
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks([1])
    handles = [Line2D([], [], color=_colour(r["arm"]), lw=2, label=r["arm"]) for r in ok]
    handles += [Line2D([], [], color="black", ls="--", label="training"),
                Line2D([], [], color="black", ls="-", label="validation")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
    save_figure(fig, path)
    plt.close(fig)


def plot_per_class(results: list[dict], classes, path: Path, per_class=None) -> None:
    """Per-class test accuracy of every arm; ``per_class(confusion_matrix)`` computes it
    (lesson 05's ``per_class_accuracy`` in a run), else each result's own figures."""
    import numpy as np

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 4.2), layout="constrained")
    width = 0.8 / max(len(ok), 1)
    x = np.arange(len(classes))
    for i, r in enumerate(ok):
        acc = (per_class(np.asarray(r["confusion_matrix"])) if per_class is not None
               else r["per_class_accuracy"])  # fmt: skip
        ax.bar(x + i * width, [100 * float(v) for v in acc], width, label=r["arm"],
               color=_colour(r["arm"]))  # fmt: skip
    ax.set_xticks(x + 0.4 - width / 2, classes, rotation=30, ha="right")
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title="Per-class test accuracy")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    save_figure(fig, path)
    plt.close(fig)


def plot_confusions(results: list[dict], classes, path: Path) -> None:
    """One confusion matrix per arm, two to a row: rows are the true class, each cell the
    share of that class (colour) and the count (number), with a colour bar."""
    import numpy as np

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    cols = 2 if len(ok) > 1 else 1
    rows = max(1, -(-len(ok) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(FIG_WIDTH * (1 if cols == 2 else 0.62),
                                                  3.9 * rows), squeeze=False,
                             layout="constrained")  # fmt: skip
    image = None
    for ax, r in zip(axes.flat, ok):
        counts = np.asarray(r["confusion_matrix"], dtype=int)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        big = counts.max() >= 1000  # four digits: write the share instead
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                text = f"{share[i, j] * 100:.0f}" if big else str(counts[i, j])
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.55 else "black")  # fmt: skip
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        ax.set_xlabel("predicted class", fontsize=9)
        ax.set_ylabel("true class", fontsize=9)
        ax.set_title(f"{r['arm']} ({100 * r['test_accuracy']:.1f}%)", fontsize=10)
    for ax in list(axes.flat)[len(ok):]:
        ax.axis("off")
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
        bar.set_label("share of the true class" + (" (cells: %)" if any(
            np.asarray(r["confusion_matrix"]).max() >= 1000 for r in ok) else ""), fontsize=9)
        bar.ax.tick_params(labelsize=8)
    save_figure(fig, path, dpi=200)
    plt.close(fig)


def plot_accuracy_vs_time(results: list[dict], path: Path) -> None:
    """Each arm a point in its colour, named in the legend (no label on a point)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8), layout="constrained")
    for r in (r for r in results if r.get("status") == "ok"):
        ax.scatter(r["train_seconds"] / 60, 100 * r["test_accuracy"], s=60,
                   color=_colour(r["arm"]), label=r["arm"], zorder=3)  # fmt: skip
    ax.set(xlabel="training time (minutes)", ylabel="test accuracy (%)",
           title="Accuracy against training time")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    save_figure(fig, path)
    plt.close(fig)


def markdown_table(results: list[dict]) -> str:
    """One row per arm, narrow enough for the site's content column: the epochs, the same
    for every arm, go below the table; parameters in millions, the trainable count only
    where it differs."""
    lines = ["| arm | status | test accuracy | best val accuracy | train time | images/s | "
             "parameters |", "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    epochs = set()
    for r in results:
        if r.get("status") == "ok":
            h = r["history"]
            epochs.add(len(h["val_accuracy"]))
            params = f"{r['parameters'] / 1e6:.1f}M"
            if r["trainable_parameters"] != r["parameters"]:
                params += f" ({r['trainable_parameters'] / 1e6:.1f}M trainable)"
            lines.append(
                f"| {r['arm']} | ok | {100 * r['test_accuracy']:.2f}% | "
                f"{100 * max(h['val_accuracy']):.2f}% | {_duration(r['train_seconds'])} | "
                f"{r['images_per_second']:.0f} | {params} |")
        else:
            lines.append(f"| {r['arm']} | {r.get('status')} (see below) | | | | | |")
    notes = []
    if epochs:
        notes.append("Epochs: " + ", ".join(str(e) for e in sorted(epochs))
                     + (" (every arm)" if len(epochs) == 1 else " (arms differ)") + ".")  # fmt: skip
    skipped = [f"- {r['arm']} {r.get('status')}: {r.get('reason', '')}" for r in results
               if r.get("status") != "ok"]  # fmt: skip
    if skipped:  # a list, apart from the line above it (Markdown needs the blank line)
        notes += ["", "Arms that did not run:", "", *skipped]
    return "\n".join(lines + ([""] + notes if notes else []))


def _duration(seconds: float) -> str:
    """Train time for the table: seconds under a minute (a GPU epoch is seconds), else minutes."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def seed_table() -> str:
    """The seed notebook's own figures, in a table of their own (its columns are not ours)."""
    lines = ["| seed notebook arm | test accuracy (reported) | its setting |", "| --- | --- | --- |"]
    lines += [f"| {arm} | {acc} | {setting} |" for arm, acc, setting in SEED_ROWS]
    return "\n".join(lines)


SYNTHETIC_NOTE = (
    "**Generated data.** These numbers come from synthetic images (`alexnet-course data "
    "synth`): they show that every arm runs end to end, not how AlexNet does on CIFAR-10. "
    "The images are easy and few, and the run is two short epochs, so scratch arms with "
    "BatchNorm can score high while torchvision's AlexNet, which has no normalisation layer, "
    "often stays near chance (10%) this early; the pretrained arms here load a random "
    "stand-in for the ImageNet weights when the test suite runs them. For real numbers run "
    "the `cpu` or `gpu` profile on CIFAR-10.")


def lesson_analysis(results: list[dict], analysis, impl: str) -> list[str]:
    """Lesson 05's part of the report (``analysis``: its module, from ``impl``): the table,
    each arm's overfitting gap, what pretraining buys, and the written analysis. Where a
    number cannot be computed (an arm did not run) the report says why."""
    ok = [r for r in results if r.get("status") == "ok"]
    lines = [f"## The comparison (lesson 05's analysis, {impl})", "",
             analysis.comparison_table(results), ""]  # fmt: skip
    gaps = []
    for r in ok:
        try:
            gaps.append(f"{r['arm']} {100 * float(analysis.overfitting_gap(r)):+.1f}")
        except Exception as e:  # noqa: BLE001 - a learner's analysis may fail on real results
            gaps.append(f"{r['arm']} not computed ({type(e).__name__}: {e})")
    if gaps:
        lines += ["Overfitting gap (last epoch's training minus validation accuracy, "
                  "percentage points): " + "; ".join(gaps) + ".", ""]  # fmt: skip
    try:
        gain = 100 * float(analysis.pretraining_gain(results))
        lines += [f"Pretraining gain (torch-pretrained minus torch-tv-scratch, test "
                  f"accuracy): {gain:+.1f} percentage points.", ""]  # fmt: skip
    except Exception as e:  # noqa: BLE001 - an arm that did not run: the reason, not a number
        lines += [f"Pretraining gain: not computed ({e}).", ""]
    if not ok:  # lesson 05 analyses arms that ran: with none, there is nothing to write
        return [*lines, "Written analysis: none, as no arm ran.", ""]
    try:
        lines += [analysis.analysis(results), ""]
    except Exception as e:  # noqa: BLE001
        lines += [f"Written analysis: not available ({type(e).__name__}: {e}).", ""]
    return lines


def budget_lines(results: list[dict]) -> list[str]:
    """What ``--budget-minutes`` did to the run, from the plan its arms carry: the scaling,
    the measured steps it was planned from, a re-plan, and the arms planned for no time."""
    plan = next((r["plan"] for r in results if r.get("plan")), None)
    if not plan or plan.get("budget_minutes") is None:
        return []
    steps = ", ".join(f"{a} {s:.3g} s" for a, s in plan.get("measured_step_seconds", {}).items())
    lines = [f"**Budget.** --budget-minutes {plan['budget_minutes']:g}: {plan['scale']}; "
             f"planned from the measured training steps ({steps}) at "
             f"{_duration(plan['estimated_total_seconds'])}, against "
             f"{_duration(plan['estimated_unscaled_seconds'])} for the whole profile."]  # fmt: skip
    check = plan.get("check")
    if check:
        lines.append(f"Checked on {check['arm']}'s steps {check['steps']}: {check['why']}.")
    for arm, why in (plan.get("skipped") or {}).items():
        lines.append(f"{arm}: planned for no time (it could not run: {why.split(';')[0]}).")
    return [" ".join(lines[:2]), *[f"- {x}" for x in lines[2:]], ""]


def write_report(results: list[dict], out: Path, classes, analysis=None,
                 impl: str = "solutions") -> str:  # fmt: skip
    """Write the figures and ``report.md`` into ``out``; return the report's text. With
    ``analysis`` (lesson 05's module), its functions make the table, the per-class
    accuracy, the overfitting gaps, the pretraining gain and the written analysis."""
    ok = [r for r in results if r.get("status") == "ok"]
    per_class = analysis.per_class_accuracy if analysis is not None else None
    figures = []
    if ok:
        for fname, fn in (("learning_curves.png", lambda p: plot_learning_curves(results, p)),
                          ("per_class_accuracy.png",
                           lambda p: plot_per_class(results, classes, p, per_class)),
                          ("confusion_matrices.png", lambda p: plot_confusions(results, classes, p)),
                          ("accuracy_vs_time.png", lambda p: plot_accuracy_vs_time(results, p))):
            fn(out / fname)
            figures.append(fname)
    prov = next((r["provenance"] for r in results if "provenance" in r), {})
    name = prov.get("profile", {}).get("name", "?")
    synthetic = bool(prov.get("profile", {}).get("synthetic"))
    text = [f"# AlexNet on CIFAR-10: pretrained against scratch ({name} profile)", ""]
    if synthetic:
        text += [SYNTHETIC_NOTE, ""]
    text += budget_lines(results)
    if analysis is not None:
        text += lesson_analysis(results, analysis, impl)
        text += ["## Details", ""]
    text += [markdown_table(results), "",
            f"- command: `{prov.get('command', '?')}`",
            f"- hardware: {prov.get('hardware', '?')}; device {prov.get('device', '?')}; "
            f"precision {prov.get('precision', '?')}",
            f"- data: {prov.get('data_source', '?')} (sha256 {prov.get('data_sha256', '?')[:16]}...)",
            f"- versions: {prov.get('versions', {})}; commit {commit_text(prov)}; "
            f"{prov.get('date', '')}",
            ""]  # fmt: skip
    if not synthetic:  # the seed's real CIFAR-10 figures beside real CIFAR-10 runs only
        text += ["The seed notebook's own reported figures (not measured here):", "",
                 seed_table(), ""]  # fmt: skip
    if (out / "samples.png").exists():
        figures.append("samples.png")
    text += [f"![{f}]({f})" for f in figures]
    report = "\n".join(text) + "\n"
    (out / "report.md").write_text(report)
    return report
