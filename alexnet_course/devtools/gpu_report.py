"""What ``gpu-check`` makes of its steps: each step's record from its output files, and
the summary (images/s, TFLOP/s against the device's peak, peak memory, torch.compile)."""

from __future__ import annotations

import json
from pathlib import Path

TORCH_ARMS = ("torch-scratch", "torch-tv-scratch", "torch-pretrained")


def _human_bytes(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def _public(text: str, root: Path) -> str:
    """``text`` as the check publishes it: the checkout as ``.``, the home folder as ``~``,
    and the device's temp folder (the check's work folders) as ``<tmp>``, a placeholder, not
    a variable: a reader has nothing of that machine's temp folder to look at."""
    import re
    import tempfile

    from alexnet_course.provenance import public_text

    text = public_text(text, root)
    tmp = str(Path(tempfile.gettempdir()).resolve())
    return text if tmp == "/" else re.sub(re.escape(tmp) + r"(?=/|\b|$)", "<tmp>", text)



def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finish_pytest(rec: dict, outcomes_path: Path, bench_path: Path, cuda: bool,
                   root: Path) -> None:
    from alexnet_course.grading.plugin import read_outcomes

    rows = read_outcomes(outcomes_path)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    rec["tests"] = counts
    rec["outcomes"] = [{"test": r["nodeid"], "status": r["status"],
                        **({"output": _public(r["output"][-800:], root)} if r["status"] != "passed"
                           else {})}
                       for r in rows]  # fmt: skip
    bench = _read_json(bench_path) or {}
    extra = [dict(b.get("extra_info", {}), test=b.get("name")) for b in bench.get("benchmarks", [])
             if b.get("extra_info")]  # fmt: skip
    if extra:
        rec["benchmark_extra_info"] = extra
    if rec["status"] != "ok":
        return
    if not rows:
        rec.update(status="failed", reason="no gpu-marked graded test was collected")
    elif counts.get("skipped") and cuda:
        rec.update(status="failed", reason=f"{counts['skipped']} gpu test(s) skipped on a machine "
                                           "with CUDA")  # fmt: skip
    elif counts.get("skipped"):
        rec["note"] = (f"{counts['skipped']} gpu test(s) skipped: needs a CUDA GPU (none found), "
                       "as expected without one")  # fmt: skip


def _finish_compare(rec: dict, folder: Path) -> None:
    arms = []
    for arm in TORCH_ARMS:
        res = _read_json(folder / arm / "results.json")
        if res is None:
            arms.append({"arm": arm, "status": "missing", "reason": "no results.json"})
            continue
        res.pop("confusion_matrix", None)
        res.pop("per_class_accuracy", None)
        res.pop("traceback", None)
        prov = res.pop("provenance", None)
        if prov and "provenance" not in rec:
            rec["provenance"] = {k: prov.get(k) for k in ("command", "precision", "data_source",
                                                          "split", "profile", "hardware")}
        arms.append(res)
    rec["arms"] = arms
    if rec["status"] != "ok":
        return
    bad = [a for a in arms if a["status"] not in ("ok", "skipped")]
    if bad:
        rec.update(status="failed", reason="; ".join(f"{a['arm']} {a['status']}: "
                                                     f"{a.get('reason', '')}" for a in bad))
    skipped = [a for a in arms if a["status"] == "skipped"]
    if skipped:
        rec["note"] = "; ".join(f"{a['arm']} skipped: {a.get('reason', '')}" for a in skipped)


def _settings_text(s: dict | None) -> str:
    if not s:
        return ""
    from alexnet_course.compare.settings import describe

    return describe(s)


def _throughput(report: dict) -> list[dict]:
    """images/s of every measurement, with TFLOP/s and its share of the bf16 peak."""
    flops = report.get("flops_per_image", {})
    peak = report.get("peak_bf16_tflops")
    rows = []

    def add(source, ips, model, settings=""):
        if not ips:
            return
        row = {"source": source, "images_per_second": round(ips, 1), "model": model,
               "settings": settings}  # fmt: skip
        if flops.get(model):
            row["tflops"] = round(ips * flops[model] / 1e12, 2)
            if peak:
                row["of_peak"] = round(row["tflops"] / peak, 4)
        rows.append(row)

    for s in report["steps"]:
        if s["name"].startswith("bench") and s.get("result"):
            r = s["result"]
            for variant, ips in r.get("images_per_s", {}).items():
                add(f"{s['name']} {variant}", ips, "lesson03",
                    f"batch {r.get('batch_size')} at {r.get('size')} px")
        elif s["name"] == "compare":
            for a in s.get("arms", []):
                if a.get("status") == "ok":
                    add(f"compare {a['arm']}", a.get("images_per_second"),
                        "lesson03" if a["arm"] == "torch-scratch" else "torchvision",
                        _settings_text(a.get("settings")) + " (epoch, input pipeline included)")
        elif s["name"] == "probe" and s.get("result"):
            r = s["result"]
            how = "bf16" if r.get("bf16") else "fp32"
            how += " + channels_last" if r.get("channels_last") else ""
            add("probe (training steps only)", r.get("images_per_second"), "lesson03", how)
        elif s["name"] == "pytest":
            for e in s.get("benchmark_extra_info", []):
                if e.get("images_per_s"):
                    add(f"pytest {e.get('test')}", e["images_per_s"], "lesson03",
                        "the test's own setting")
    return rows


def _peak_memory(report: dict) -> dict:
    probe = next((s for s in report["steps"] if s["name"] == "probe"), None)
    r = (probe or {}).get("result") or {}
    return {"allocated_bytes": r.get("peak_memory_allocated_bytes"),
            "reserved_bytes": r.get("peak_memory_reserved_bytes"),
            "process_max_rss_bytes": r.get("max_rss_bytes"),
            "measured_in": "probe: lesson 03's AlexNet, batch {} at {} px".format(
                r.get("batch"), r.get("size")) if r else "not measured"}  # fmt: skip


def _compile(report: dict) -> dict:
    b = next((s for s in report["steps"] if s["name"] == "bench"), None)
    if b is None:
        return {"status": "not run"}
    r = b.get("result") or {}
    ips = r.get("images_per_s", {})
    if "+compile" in ips:
        best = max((v for k, v in ips.items() if k not in ("seed", "+compile")), default=None)
        return {"status": "ok", "compile_seconds": r.get("compile_seconds"),
                "images_per_second": ips["+compile"], "best_eager_images_per_second": best,
                "speedup_over_best_eager": ips["+compile"] / best if best else None}  # fmt: skip
    if b.get("note"):
        return {"status": "not measured", "reason": b["note"]}
    return {"status": b["status"], "reason": b.get("reason", ""), "output_tail":
            b.get("output_tail", "")[-1500:]}  # fmt: skip


def summary(report: dict) -> str:
    p = report["provenance"]
    lines = [f"alexnet-course gpu-check, {report['mode']} mode: {p['device_name']}, torch "
             f"{p['torch']}, commit {p['git_commit'][:10]}, {p['date']}",
             f"data: {p['data_source']}"
             + ("" if "train" not in report.get("data", {}) else
                f" ({report['data']['train']} train / {report['data']['test']} test images)")]  # fmt: skip
    lines += ["", f"{'step':<18}{'status':<9}{'seconds':>8}  detail"]
    for s in report["steps"]:
        detail = s.get("reason") or s.get("note") or ""
        if s["name"] == "pytest" and s.get("tests"):
            detail = ", ".join(f"{v} {k}" for k, v in s["tests"].items()) + (f"; {detail}" if detail else "")
        lines.append(f"{s['name']:<18}{s['status']:<9}{s.get('seconds', 0):>8.1f}  {detail}")
    f = report.get("flops_per_image", {})
    peak = report.get("peak_bf16_tflops")
    lines += ["", "throughput (training; TFLOP/s from counted conv/linear FLOPs, x3 for the "
              "backward pass):"]
    if f.get("lesson03"):
        lines.append(f"  FLOPs per training image at {f['size']} px: lesson 03's AlexNet "
                     f"{f['lesson03'] / 1e9:.2f} G, torchvision's {f['torchvision'] / 1e9:.2f} G")
    lines.append(f"  peak: {report['peak_bf16_source']}" + (f", {peak:g} TFLOP/s" if peak else ""))
    lines.append(f"  {'source':<34}{'images/s':>10}{'TFLOP/s':>9}{'of peak':>9}  settings")
    for r in report.get("throughput", []):
        share = f"{r['of_peak']:.1%}" if "of_peak" in r else "-"
        tf = f"{r['tflops']:.2f}" if "tflops" in r else "-"
        lines.append(f"  {r['source'][:33]:<34}{r['images_per_second']:>10.1f}{tf:>9}{share:>9}  "
                     f"{r['settings']}")
    m = report.get("peak_memory", {})
    lines += ["", f"peak GPU memory ({m.get('measured_in')}): allocated "
              f"{_human_bytes(m.get('allocated_bytes'))}, reserved {_human_bytes(m.get('reserved_bytes'))}"
              + ("" if m.get("allocated_bytes") is not None else
                 f" (CPU run; process max RSS {_human_bytes(m.get('process_max_rss_bytes'))})")]  # fmt: skip
    c = report.get("compile", {})
    if c.get("status") == "ok":
        sp = c.get("speedup_over_best_eager")
        lines.append(f"torch.compile: compiled in {c['compile_seconds']:.0f} s, "
                     f"{c['images_per_second']:.0f} images/s"
                     + (f" ({sp:.2f}x the best eager variant)" if sp else ""))
    else:
        lines.append(f"torch.compile: {c.get('status')}" + (f": {c['reason']}" if c.get("reason") else ""))
    for s in report["steps"]:
        if s["name"] == "compare" and s.get("profile_note"):
            lines.append(f"compare: {s['profile_note']}")
    verdict = "every step ok or skipped with a reason" if report["ok"] else "FAILED: " + ", ".join(
        s["name"] for s in report["steps"] if s["status"] not in ("ok", "skipped"))
    lines += ["", f"{verdict}; {report['total_seconds']:.0f} s in all"]
    return "\n".join(lines)
