"""Grading at class size, in each sandbox tier (not a test: a measurement).

    .venv/bin/python tests/speed_grading.py [--copies 20] [--jobs 2] [--lesson 03_torch_scratch]
                                            [--tiers bwrap,uid,none] [--no-attacks]

Grades N copies of a solved lesson, plus the lesson-03 attack set of tests/test_grader.py
(an all-zero model, a cached speed test, borrowed reference helpers) and a stub, with
``alexnet-course grade --jobs J`` in each tier this machine has, and prints the wall
times, the seconds per submission and each tier's cost as a ratio to running without a
sandbox (``none``). Every copy must get full marks and every attack must lose the tests it
targets. The reference solution is graded first in every run (the grader's calibration):
its time is reported on its own line and counted in the wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from alexnet_course.course import learner_files
    from alexnet_course.grading.grader import grade

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--lesson", default="03_torch_scratch")
    p.add_argument("--tiers", default="bwrap,uid,none")
    p.add_argument("--no-attacks", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    attacks = {}
    if args.lesson == "03_torch_scratch" and not args.no_attacks:
        from tests import test_grader as tg

        sol = (ROOT / "solutions" / args.lesson / "alexnet.py").read_text()
        attacks = {"attack_all_zero_model": sol + tg.ZERO_MODEL,
                   "attack_cached_speed": sol + tg.CACHED_SPEED,
                   "attack_reference_helpers": sol + tg.REFERENCE_HELPERS,
                   "stub": (ROOT / "lessons" / args.lesson / "alexnet.py").read_text()}  # fmt: skip
    record = {"copies": args.copies, "jobs": args.jobs, "lesson": args.lesson,
              "cpus": os.cpu_count(), "load_at_start": os.getloadavg(), "tiers": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="class-") as tmp:
        course = Path(tmp) / "course"  # lessons and solutions only: private to the grader
        shutil.copytree(ROOT / "lessons" / args.lesson, course / "lessons" / args.lesson)
        shutil.copytree(ROOT / "solutions" / args.lesson, course / "solutions" / args.lesson)
        subs = []
        for i in range(args.copies):
            d = Path(tmp) / "subs" / f"learner{i:02d}" / "lessons" / args.lesson
            d.mkdir(parents=True)
            for f in learner_files(ROOT / "solutions" / args.lesson):
                shutil.copy(f, d / f.name)
            subs.append(d.parent.parent)
        for name, text in attacks.items():
            d = Path(tmp) / "subs" / name / "lessons" / args.lesson
            shutil.copytree(subs[0] / "lessons" / args.lesson, d)
            (d / "alexnet.py").write_text(text)
            subs.append(d.parent.parent)
        for tier in args.tiers.split(","):
            out = Path(tmp) / f"out-{tier}"
            lines: list[str] = []

            def echo(s: str, lines: list[str] = lines) -> None:
                lines.append(s)
                print("   ", s, flush=True)

            t0 = time.perf_counter()
            try:
                grade(subs, out, course=course, lessons=[args.lesson], jobs=args.jobs,
                      sandbox_tier=tier, echo=echo)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - a tier this machine lacks: say so, go on
                print(f"{tier}: not measured ({type(e).__name__}: {e})", flush=True)
                continue
            wall = time.perf_counter() - t0
            rows = {r["submission"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
            copies = [rows[f"learner{i:02d}"] for i in range(args.copies)]
            full = sum(r["total"] == r["max"] for r in copies)
            ref = next((s for s in lines if s.startswith("reference solution")), "")
            record["tiers"][tier] = {"wall_seconds": round(wall, 1), "full_marks": full,
                                     "reference": ref,
                                     "attacks": {n: f"{rows[n]['total']}/{rows[n]['max']}"
                                                 for n in attacks}}  # fmt: skip
            print(f"{tier}: {wall:.0f} s wall for {len(subs)} submissions "
                  f"({wall / len(subs):.1f} s each), {full}/{args.copies} copies at full marks; "
                  f"attacks {record['tiers'][tier]['attacks']}", flush=True)
    base = record["tiers"].get("none", {}).get("wall_seconds")
    for r in record["tiers"].values():
        if base:
            r["cost_vs_none"] = round(r["wall_seconds"] / base, 2)
    record["load_at_end"] = os.getloadavg()
    import torch

    from alexnet_course.provenance import common_record

    record["provenance"] = common_record(torch.device("cpu"), root=ROOT)
    record["provenance"]["command"] = "python tests/speed_grading.py " + " ".join(sys.argv[1:])
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
