"""Grading at class size, with and without the sandbox (not a test: a measurement).

    .venv/bin/python tests/speed_grading.py [--copies 20] [--jobs 2] [--lesson 03_torch_scratch]

Grades N copies of a solved lesson with ``alexnet-course grade --jobs J`` in the bubblewrap
sandbox, then again with ``--no-sandbox``, and prints the wall times, the seconds per
submission and the sandbox's cost as a ratio. Every copy must get full marks.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from alexnet_course.course import learner_files
    from alexnet_course.grading.grader import grade

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--lesson", default="03_torch_scratch")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="class-") as tmp:
        subs = []
        for i in range(args.copies):
            d = Path(tmp) / "subs" / f"learner{i:02d}" / "lessons" / args.lesson
            d.mkdir(parents=True)
            for f in learner_files(ROOT / "solutions" / args.lesson):
                shutil.copy(ROOT / "solutions" / args.lesson / f.name, d / f.name)
            subs.append(d.parent.parent)
        times = {}
        for mode, sandbox in (("sandbox", True), ("no sandbox", False)):
            out = Path(tmp) / mode.replace(" ", "-")
            t0 = time.perf_counter()
            grade(subs, out, course=ROOT, lessons=[args.lesson], jobs=args.jobs,
                  use_sandbox=sandbox, echo=lambda s: print("   ", s, flush=True))  # fmt: skip
            times[mode] = time.perf_counter() - t0
            rows = list(csv.DictReader(open(out / "gradebook.csv")))
            full = sum(r["total"] == r["max"] for r in rows)
            print(f"{mode}: {times[mode]:.0f} s wall for {args.copies} submissions "
                  f"({times[mode] / args.copies:.1f} s each), {full}/{len(rows)} full marks "
                  f"(max {rows[0]['max']})", flush=True)
        print(f"\nlesson {args.lesson}, {args.copies} copies, --jobs {args.jobs}: sandbox "
              f"{times['sandbox']:.0f} s, no sandbox {times['no sandbox']:.0f} s; the sandbox "
              f"costs {times['sandbox'] / times['no sandbox']:.2f}x per submission")
    return 0


if __name__ == "__main__":
    sys.exit(main())
