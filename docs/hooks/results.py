"""MkDocs hook: fill the results placeholders from committed results.json files at build time.

``<!-- comparison: results/cpu -->`` becomes the comparison table, the provenance and the
figures of that run folder (relative to docs/); ``<!-- headline: results/cpu -->`` becomes
one sentence for the home page. No number on the site is typed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from alexnet_course.compare.report import load_results, markdown_table

PLACEHOLDER = re.compile(r"<!-- (comparison|headline): (\S+) -->")
# Each figure of a run folder, with what it shows (its alt text and caption)
FIGURES = {
    "learning_curves.png": (
        "Learning curves: loss and accuracy per epoch of each arm, training (dashed) and validation (solid)."
    ),
    "per_class_accuracy.png": "Test accuracy per class, per arm.",
    "confusion_matrices.png": (
        "Confusion matrices on the test set: rows are true classes, columns predictions."
    ),
    "accuracy_vs_time.png": "Test accuracy against training time, per arm.",
    "samples.png": "The first 32 test images with their labels, drawn by lesson 01's show_batch.",
}


def _comparison(folder: Path, rel: str, page_dir: str) -> str:
    results = load_results(folder)
    if not results:
        return f"*No results committed under `docs/{rel}` yet.*"
    prov = results[0]["provenance"]
    prefix = "../" * page_dir.count("/") if page_dir else ""
    lines = [markdown_table(results), "",
             f"- command: `{prov['command']}` (profile `{prov['profile']['name']}`: "
             f"{prov['profile']['input_size']} px, {prov['profile']['epochs']} epochs, batch "
             f"{prov['profile']['batch_size']}, norm `{prov['profile']['norm']}`, peak "
             f"learning rate {prov['profile']['lr']}, scratch init "
             f"`{prov['profile'].get('scratch_init', 'paper')}`)",
             f"- hardware: {prov['hardware']}; device `{prov['device']}`; precision: "
             f"{prov['precision']}",
             f"- data: {prov['data_source']} (sha256 `{prov['data_sha256'][:16]}…`), split "
             f"{prov['split']}",
             f"- versions: {prov['versions']}; commit `{prov['git_commit'][:10]}`; "
             f"{prov['date']}", ""]  # fmt: skip
    for fig, caption in FIGURES.items():
        if (folder / fig).exists():
            lines += [f"![{caption}]({prefix}{rel}/{fig})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def _headline(folder: Path, rel: str) -> str:
    everything = load_results(folder)
    results = [r for r in everything if r.get("status") == "ok"]
    if not results:
        return f"*No comparison results committed under `docs/{rel}` yet.*"
    prov = results[0]["provenance"]
    minutes = sum(r["train_seconds"] for r in results) / 60
    parts = ", ".join(f"**{r['arm']} {100 * r['test_accuracy']:.1f}%**" for r in
                      sorted(results, key=lambda r: -r["test_accuracy"]))  # fmt: skip
    text = (f"Measured on {prov['hardware']} ({prov['profile']['name']} profile, "
            f"{prov['profile']['epochs']} epochs at {prov['profile']['input_size']} px, "
            f"{minutes:.0f} minutes of training in all, {prov['data_source'].split(' at ')[0]}): "
            f"{parts} test accuracy.")  # fmt: skip
    missing = [r["arm"] for r in everything if r.get("status") != "ok"]
    if missing:
        text += (f" Not run there: {', '.join(missing)} (see the [results](results.md) for "
                 "why).")  # fmt: skip
    return text


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"])
    page_dir = str(Path(page.file.src_uri).parent).replace(".", "")

    def fill(m: re.Match) -> str:
        kind, rel = m.group(1), m.group(2)
        folder = docs / rel
        return _comparison(folder, rel, page_dir) if kind == "comparison" else _headline(folder, rel)

    return PLACEHOLDER.sub(fill, markdown)
