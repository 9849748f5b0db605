"""The learner's loop, timed side by side with another commit (not a test: a measurement).

    .venv/bin/python tests/speed_lessons.py --baseline 097ad5c [--busy] [--repeat 2]

For each lesson it runs ``pytest lessons/NN --solutions`` (pytest's own seconds) and one
task (``-m task3_2``, wall seconds) in this checkout and in a worktree of ``--baseline``,
interleaved, and prints both with their ratio. ``--busy`` adds a busy-loop process on one
core for the whole measurement, the "other process on the machine" case. Speed is judged as
a ratio measured in one run, never as a timed assertion in the suite.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ["01_data", "02_torch_pretrained", "03_torch_scratch", "04_keras_scratch", "05_analysis"]
TARGETS = {"03_torch_scratch": 20, "04_keras_scratch": 30, "01_data": 10,
           "02_torch_pretrained": 10, "05_analysis": 10}  # fmt: skip


def _pytest_seconds(tree: Path, args: list[str]) -> tuple[float, float, int]:
    # each tree runs with its own course package (PYTHONPATH wins over the editable install)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "ALEXNET_COURSE_ROOT": str(tree),
           "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider",
                           "--no-score"], cwd=tree, env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    m = re.search(r"in ([0-9.]+)s", proc.stdout.splitlines()[-1] if proc.stdout else "")
    return (float(m.group(1)) if m else float("nan")), wall, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="HEAD", help="the commit to compare with")
    p.add_argument("--busy", action="store_true", help="a busy-loop process on one core")
    p.add_argument("--repeat", type=int, default=1, help="runs of each; the best is kept")
    p.add_argument("--lessons", default=",".join(LESSONS))
    args = p.parse_args(argv)
    lessons = [x for x in args.lessons.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        busy = None
        if args.busy:
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            rows = []
            cases = [(les, [f"lessons/{les}", "--solutions"]) for les in lessons]
            cases.append(("task 3.2 (wall)", ["lessons/03_torch_scratch", "--solutions",
                                               "-m", "task3_2"]))  # fmt: skip
            for name, pytest_args in cases:
                best = {"new": (float("inf"), 0.0), "old": (float("inf"), 0.0)}
                for _ in range(args.repeat):
                    for label, tree in (("old", base), ("new", ROOT)):  # interleaved
                        secs, wall, rc = _pytest_seconds(tree, pytest_args)
                        value = wall if name.startswith("task") else secs
                        if rc == 0 and value < best[label][0]:
                            best[label] = (value, wall)
                rows.append((name, best["old"][0], best["new"][0]))
                print(f"  {name:<22} old {best['old'][0]:6.1f} s   new {best['new'][0]:6.1f} s   "
                      f"new/old {best['new'][0] / best['old'][0]:.2f}", flush=True)
        finally:
            if busy is not None:
                busy.kill()
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           capture_output=True)  # fmt: skip
    load = "one busy-loop process on one core" if args.busy else "no extra load"
    print(f"\n{os.cpu_count()} cores, {load}; baseline {args.baseline}; pytest's own seconds "
          "for lessons, wall seconds for one task; best of", args.repeat)
    print(f"{'case':<22}{'baseline':>10}{'this tree':>11}{'ratio':>8}{'target':>8}")
    for name, old, new in rows:
        target = TARGETS.get(name)
        t = f"<= {target}" if target else ("<= 6" if name.startswith("task") else "")
        print(f"{name:<22}{old:>9.1f}s{new:>10.1f}s{new / old:>8.2f}{t:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
