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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


ARM_COLOURS = {  # one colour per arm, in every figure (matplotlib's tab10)
    "torch-scratch": "tab:blue", "torch-tv-scratch": "tab:orange", "torch-pretrained": "tab:green",
    "keras-scratch": "tab:red", "keras-pretrained": "tab:purple",
}  # fmt: skip


def _colour(arm: str) -> str:
    return ARM_COLOURS.get(arm, "tab:gray")


def plot_learning_curves(results: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch: one colour per arm, training dashed, validation solid,
    the legend beside the axes (never over the lines)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for r in ok:
        h, c = r["history"], _colour(r["arm"])
        ep = range(1, len(h["val_accuracy"]) + 1)
        axes[0].plot(ep, h["train_loss"], "--", color=c, marker="o", ms=3)
        axes[0].plot(ep, h["val_loss"], "-", color=c, marker="o", ms=3)
        if any(v is not None for v in h["train_accuracy"]):
            axes[1].plot(ep, [100 * v for v in h["train_accuracy"]], "--", color=c, marker="o", ms=3)
        axes[1].plot(ep, [100 * v for v in h["val_accuracy"]], "-", color=c, marker="o", ms=3)
    axes[0].set(xlabel="epoch", ylabel="loss", title="Loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=_colour(r["arm"]), lw=2, label=r["arm"]) for r in ok]
    handles += [Line2D([], [], color="black", ls="--", label="training"),
                Line2D([], [], color="black", ls="-", label="validation")]  # fmt: skip
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.86, 0.5), fontsize=8,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_class(results: list[dict], classes, path: Path, per_class=None) -> None:
    """Per-class test accuracy of every arm; ``per_class(confusion_matrix)`` computes it
    (lesson 05's ``per_class_accuracy`` in a run), else each result's own figures."""
    import numpy as np

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(12, 4.2))
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
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusions(results: list[dict], classes, path: Path) -> None:
    """One confusion matrix per arm, one per row (readable at the site's column width): rows
    are the true class, each cell the share of that class (colour) and the count (number),
    with a colour bar."""
    import numpy as np

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    cols, rows = 1, max(1, len(ok))
    fig, axes = plt.subplots(rows, cols, figsize=(6.8, 5.6 * rows), squeeze=False,
                             layout="constrained")  # fmt: skip
    image = None
    for ax, r in zip(axes.flat, ok):
        counts = np.asarray(r["confusion_matrix"], dtype=int)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.55 else "black")  # fmt: skip
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=10)
        ax.set_yticks(range(len(classes)), classes, fontsize=10)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{r['arm']} ({100 * r['test_accuracy']:.1f}% test accuracy)", fontsize=11)
    for ax in list(axes.flat)[len(ok):]:
        ax.axis("off")
    fig.get_layout_engine().set(w_pad=0.15, h_pad=0.15)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02)
        bar.set_label("share of the true class")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy_vs_time(results: list[dict], path: Path) -> None:
    """Each arm a point in its colour, named in the legend (no label on a point)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for r in (r for r in results if r.get("status") == "ok"):
        ax.scatter(r["train_seconds"] / 60, 100 * r["test_accuracy"], s=60,
                   color=_colour(r["arm"]), label=r["arm"], zorder=3)  # fmt: skip
    ax.set(xlabel="training time (minutes)", ylabel="test accuracy (%)",
           title="Accuracy against training time")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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
    notes += [f"- {r['arm']} {r.get('status')}: {r.get('reason', '')}" for r in results
              if r.get("status") != "ok"]  # fmt: skip
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
    try:
        lines += [analysis.analysis(results), ""]
    except Exception as e:  # noqa: BLE001
        lines += [f"Written analysis: not available ({type(e).__name__}: {e}).", ""]
    return lines


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
