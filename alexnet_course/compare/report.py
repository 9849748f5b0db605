"""Figures and ``report.md`` from the comparison's results files (and nothing else)."""

from __future__ import annotations

import json
from pathlib import Path

SEED_ROWS = [  # the seed notebook's own figures, quoted as its record
    ("torch-pretrained", "82.18%", "new 10-class head, SGD lr 0.001, 2 epochs at 224 px"),
    ("torch-scratch", "58.93%", "96-256-384-384-256 with BatchNorm, 1 epoch"),
    ("keras-scratch", "59.3%", "raw 32x32 images"),
]


def load_results(folder: Path) -> list[dict]:
    """Every ``*/results.json`` under ``folder``, in the runner's arm order."""
    from alexnet_course.compare.runner import ARMS

    results = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*/results.json"))]
    return sorted(results, key=lambda r: ARMS.index(r["arm"]) if r.get("arm") in ARMS else len(ARMS))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(results: list[dict], path: Path) -> None:
    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in ok:
        h = r["history"]
        ep = range(1, len(h["val_accuracy"]) + 1)
        axes[0].plot(ep, h["train_loss"], "--", label=f"{r['arm']} train")
        axes[0].plot(ep, h["val_loss"], "-", label=f"{r['arm']} val")
        if any(v is not None for v in h["train_accuracy"]):
            axes[1].plot(ep, h["train_accuracy"], "--", label=f"{r['arm']} train")
        axes[1].plot(ep, h["val_accuracy"], "-", label=f"{r['arm']} val")
    axes[0].set(xlabel="epoch", ylabel="loss", title="Loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_per_class(results: list[dict], classes, path: Path) -> None:
    import numpy as np

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(len(ok), 1)
    x = np.arange(len(classes))
    for i, r in enumerate(ok):
        ax.bar(x + i * width, r["per_class_accuracy"], width, label=r["arm"])
    ax.set_xticks(x + 0.4 - width / 2, classes, rotation=30)
    ax.set(ylabel="test accuracy", ylim=(0, 1), title="Per-class test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusions(results: list[dict], classes, path: Path) -> None:
    import numpy as np

    plt = _plt()
    ok = [r for r in results if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, max(len(ok), 1), figsize=(4.2 * max(len(ok), 1), 4),
                             squeeze=False)  # fmt: skip
    for ax, r in zip(axes[0], ok):
        cm = np.asarray(r["confusion_matrix"], dtype=float)
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
        ax.set_yticks(range(len(classes)), classes, fontsize=6)
        ax.set(title=r["arm"], xlabel="predicted", ylabel="true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy_vs_time(results: list[dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in (r for r in results if r.get("status") == "ok"):
        ax.scatter(r["train_seconds"] / 60, 100 * r["test_accuracy"], s=40)
        ax.annotate(r["arm"], (r["train_seconds"] / 60, 100 * r["test_accuracy"]), fontsize=8)
    ax.set(xlabel="training time (minutes)", ylabel="test accuracy (%)",
           title="Accuracy against training time")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown_table(results: list[dict]) -> str:
    lines = ["| arm | status | test accuracy | best val accuracy | epochs | train time | "
             "images/s | parameters (trainable) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        if r.get("status") == "ok":
            h = r["history"]
            lines.append(
                f"| {r['arm']} | ok | {100 * r['test_accuracy']:.2f}% | "
                f"{100 * max(h['val_accuracy']):.2f}% | {len(h['val_accuracy'])} | "
                f"{r['train_seconds'] / 60:.1f} min | {r['images_per_second']:.0f} | "
                f"{r['parameters']:,} ({r['trainable_parameters']:,}) |")
        else:
            lines.append(f"| {r['arm']} | {r.get('status')} (see below) | | | | | | |")
    reasons = [f"- {r['arm']} {r.get('status')}: {r.get('reason', '')}" for r in results
               if r.get("status") != "ok"]  # fmt: skip
    return "\n".join(lines + ([""] + reasons if reasons else []))


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


def write_report(results: list[dict], out: Path, classes) -> str:
    """Write the figures and ``report.md`` into ``out``; return the report's text."""
    ok = [r for r in results if r.get("status") == "ok"]
    figures = []
    if ok:
        for fname, fn in (("learning_curves.png", lambda p: plot_learning_curves(results, p)),
                          ("per_class_accuracy.png", lambda p: plot_per_class(results, classes, p)),
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
    text += [markdown_table(results), "",
            f"- command: `{prov.get('command', '?')}`",
            f"- hardware: {prov.get('hardware', '?')}; device {prov.get('device', '?')}; "
            f"precision {prov.get('precision', '?')}",
            f"- data: {prov.get('data_source', '?')} (sha256 {prov.get('data_sha256', '?')[:16]}...)",
            f"- versions: {prov.get('versions', {})}; commit {prov.get('git_commit', '?')[:10]}; "
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
