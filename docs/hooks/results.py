"""MkDocs hook: fill the results placeholders from committed results.json files at build time.

``<!-- comparison: results/cpu -->`` becomes the comparison table, the provenance and the
figures of that run folder (relative to docs/); ``<!-- headline: results/cpu -->`` becomes
one sentence for the home page; ``<!-- gpu-check: results/gpu-check -->`` becomes the
throughput table of a committed ``gpu-check.json``; ``<!-- bench: results/bench/x.json -->``
becomes the table of an ``alexnet-course bench --out`` file. No number on the site is typed by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from alexnet_course.compare.report import commit_text, load_results, markdown_table

PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)<!-- (comparison|headline|gpu-check|bench): (\S+) -->",
                         re.M)  # indented: inside a content tab, the filling is indented alike
MIN_TEXT_PX = 10.5  # a figure is shown at least this wide: its smallest text this size (px)
COLUMN_PX = 700  # the content column at a 1280 px window (alexnet-course site check)
TMP_ARG = re.compile(r"(--[\w-]+ )?\$TMPDIR/\S+")
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


def reproducible(command: str) -> str:
    """A committed command with its temporary folders named for the reader: ``--data-dir
    $TMPDIR/...`` becomes ``--data-dir DATA`` (the folder holding cifar-10-batches-py),
    ``--out $TMPDIR/...`` the default ``runs/compare``."""

    def name(m: re.Match) -> str:
        flag = (m.group(1) or "").strip()
        return {"--data-dir": "--data-dir DATA", "--out": "--out runs/compare"}.get(
            flag, f"{flag} PATH".strip())

    return TMP_ARG.sub(name, command)


def figure_width(path: Path) -> str:
    """The width a figure is shown at: its own, or wider (up to the column) where its
    smallest text, recorded in the PNG, would be under MIN_TEXT_PX at its own width."""
    from PIL import Image

    from alexnet_course.compare.report import MIN_TEXT_KEY

    try:
        with Image.open(path) as im:
            px, width = float(im.text.get(MIN_TEXT_KEY, 0)), im.size[0]
    except (OSError, ValueError):
        return ""
    if not px or px >= MIN_TEXT_PX or width >= COLUMN_PX:
        return ""
    return f'{{ width="{min(COLUMN_PX, round(width * MIN_TEXT_PX / px))}" }}'


def _comparison(folder: Path, rel: str, page_dir: str) -> str:
    results = load_results(folder)
    if not results:
        return f"*No results committed under `docs/{rel}` yet.*"
    prov = results[0]["provenance"]
    prefix = "../" * page_dir.count("/") if page_dir else ""
    lines = [markdown_table(results), "",
             f"- command: `{reproducible(prov['command'])}` (profile `{prov['profile']['name']}`: "
             f"{prov['profile']['input_size']} px, {prov['profile']['epochs']} epochs, batch "
             f"{prov['profile']['batch_size']}, norm `{prov['profile']['norm']}`, peak "
             f"learning rate {prov['profile']['lr']}, scratch init "
             f"`{prov['profile'].get('scratch_init', 'paper')}`)",
             f"- hardware: {prov['hardware']}; device `{prov['device']}`; precision: "
             f"{prov['precision']}",
             f"- data: {prov['data_source']} (sha256 `{prov['data_sha256'][:16]}…`), split "
             f"{prov['split']}",
             f"- versions: {prov['versions']}; commit `{commit_text(prov)}`; "
             f"{prov['date']}", ""]  # fmt: skip
    if "DATA" in reproducible(prov["command"]):
        lines += ["DATA: the folder holding `cifar-10-batches-py/` (its path on the machine that "
                  "ran is not reproducible).", ""]  # fmt: skip
    for fig, caption in FIGURES.items():
        if (folder / fig).exists():
            lines += [f"![{caption}]({prefix}{rel}/{fig}){figure_width(folder / fig)}", "",
                      f"*{caption}*", ""]  # fmt: skip
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


def _gpu_check(folder: Path, rel: str) -> str:
    path = folder / "gpu-check.json"
    if not path.is_file():
        return f"*No GPU check committed under `docs/{rel}` yet.*"
    r = json.loads(path.read_text())
    prov, flops = r["provenance"], r["flops_per_image"]
    steps = ", ".join(f"{s['name']} {s['status']} ({s.get('seconds', 0):.0f} s)" for s in r["steps"])
    lines = [f"- command: `{reproducible(prov['command'])}`; {r['total_seconds']:.0f} s in all: "
             f"{steps}",
             f"- hardware: {prov['device_name']} (compute capability {prov['capability']}); "
             f"torch {prov['torch']}, torchvision {prov['torchvision']}, CUDA {prov['cuda']}, "
             f"Python {prov['python']}; commit `{commit_text(prov)}`; {prov['date']}",
             f"- data: {prov['data_source']}; training FLOPs per image at {flops['size']} px "
             f"(conv and linear layers, x3 for the backward pass): lesson 03's AlexNet "
             f"{flops['lesson03'] / 1e9:.2f} G, torchvision's {flops['torchvision'] / 1e9:.2f} G; "
             f"peak: {r['peak_bf16_source']}, {r['peak_bf16_tflops']:g} TFLOP/s", "",
             "| measured by | model | images/s | TFLOP/s | of bf16 peak | settings |",
             "| --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    tests = [e.get("test", "") for s in r["steps"] for e in s.get("benchmark_extra_info", [])]
    for t in r["throughput"]:
        if t["source"].startswith("pytest "):  # older checks cut the test's name to 26 letters
            cut = t["source"].removeprefix("pytest ")
            name = next((n for n in tests if n.startswith(cut)), cut)
            t["source"] = "graded test " + name.replace("_", "_<wbr>")  # may wrap in the column
        peak = f"{100 * t['of_peak']:.1f}%" if t.get("of_peak") is not None else "-"
        tflops = f"{t['tflops']:.1f}" if t.get("tflops") is not None else "-"
        lines.append(f"| {t['source']} | {t['model']} | {t['images_per_second']:.0f} | "
                     f"{tflops} | {peak} | {t['settings']} |")  # fmt: skip
    mem, comp = r.get("peak_memory") or {}, r.get("compile") or {}
    lines.append("")
    if mem.get("allocated_bytes"):
        lines.append(f"Peak GPU memory ({mem['measured_in']}): "
                     f"{mem['allocated_bytes'] / 2**30:.2f} GiB allocated, "
                     f"{mem['reserved_bytes'] / 2**30:.2f} GiB reserved.")  # fmt: skip
    if comp.get("status") == "ok":
        lines.append(f"`torch.compile` compiled in {comp['compile_seconds']:.0f} s and ran "
                     f"{comp['speedup_over_best_eager']:.2f}x the best eager variant.")  # fmt: skip
    return "\n".join(lines)


def _bench(path: Path, rel: str) -> str:
    if not path.is_file():
        return f"*No bench result committed at `docs/{rel}` yet.*"
    r = json.loads(path.read_text())
    prov, ips = r["provenance"], r["images_per_s"]
    lines = ["| variant | images/s | x seed | x previous |", "| --- | ---: | ---: | ---: |"]
    prev = None
    for name, v in ips.items():
        step = "" if prev is None else f"{v / ips[prev]:.2f}x"
        lines.append(f"| `{name}` | {v:.1f} | {r['ratio_to_seed'][name]:.2f}x | {step} |")
        prev = name
    load = prov.get("load_average_at_start")
    how = (f"{r['rounds']} interleaved rounds of {r['steps']} steps of batch {r['batch_size']} "
           f"at {r['size']} px, each variant's median step" if "statistic" in r else
           f"{r['steps']} steps of batch {r['batch_size']} at {r['size']} px, best of "
           f"{r['rounds']} interleaved rounds")  # files written before bench took medians
    lines += ["", f"- command: `{reproducible(prov['command'])}` ({how})",
              f"- hardware: {prov['hardware']}; device `{r['device']}`; bf16 units: "
              f"{'yes' if r['bf16_supported'] else 'no'}"
              + ("" if "+bf16" in ips or not r["bf16_supported"] else " (left out: fp32 only)")
              + (f"; load average at the start {load[0]:.2f}" if load else "")
              + (f", at the end {prov['load_average_at_end'][0]:.2f}"
                 if load and prov.get("load_average_at_end") else ""),
              f"- data: {prov['data_source']}; versions: "
              f"{', '.join(f'{k} {v}' for k, v in prov['versions'].items())}; commit "
              f"`{commit_text(prov)}`; {prov['date']}",
              f"- reference step ({r['reference']}): **{r['ratio']:.2f}x** the seed pipeline"]
    for name, picked in (r.get("nnpack_layers") or {}).items():
        used = [k for k, t in picked.items() if t["nnpack"]]

        def ms(v):
            return "–" if v is None else f"{v:.0f}"

        times = "; ".join(
            f"`{k}` {ms(t['onednn_ms'])} / {ms(t.get('nnpack_ms'))} / {ms(t.get('nnpack_wgrad_ms'))}"
            + (" (NNPACK with its weight gradient)" if t.get("wgrad") else " (NNPACK)" if t["nnpack"]
               else " (oneDNN)") for k, t in picked.items())  # fmt: skip
        lines.append(f"- `{name}`: NNPACK in {len(used)} of {len(picked)} convolutions. Milliseconds "
                     "for one forward and backward of each with oneDNN / NNPACK / NNPACK with its "
                     f"weight gradient too, and what was used: {times}")  # fmt: skip
    if prov.get("note"):
        lines.append(f"- note: {prov['note']}")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs = Path(config["docs_dir"])
    page_dir = str(Path(page.file.src_uri).parent).replace(".", "")

    def fill(m: re.Match) -> str:
        indent, kind, rel = m.group("indent"), m.group(2), m.group(3)
        folder = docs / rel
        if kind == "gpu-check":
            text = _gpu_check(folder, rel)
        elif kind == "bench":
            text = _bench(folder, rel)
        elif kind == "comparison":
            text = _comparison(folder, rel, page_dir)
        else:
            text = _headline(folder, rel)
        return "\n".join(indent + line if line else line for line in text.splitlines())

    return PLACEHOLDER.sub(fill, markdown)
