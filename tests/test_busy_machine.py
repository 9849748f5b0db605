"""A busy machine is not the learner's bug (#29): with both cores taken by two spinning
processes, lesson 03's speed test on the reference solution passes, or reports the machine as
too busy to judge without taking points; its message never suggests the code loops."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alexnet_course.grading.load import BUSY_ENV
from tests.conftest import ROOT, run_pytest

SPEED = "test_training_throughput_against_reference"


@pytest.mark.slow
def test_lesson_03_speed_test_on_a_busy_machine(tmp_path):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        rc, res, out = run_pytest(ROOT / "lessons" / "03_torch_scratch", "--solutions", "-m",
                                  "task3_11", results=tmp_path / "r.json", timeout=900,
                                  env={BUSY_ENV: "excuse"})  # fmt: skip
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    speed = next(t for t in res["tests"] if t["name"].endswith(SPEED))
    assert rc == 0, out[-3000:]
    assert "loop forever" not in out and "does your code" not in out, out[-3000:]
    if "busy" in speed["tags"]:  # listed, not counted
        assert speed["max_score"] == 0 and "status" not in speed
        assert speed["output"].startswith("machine too busy to judge speed: rerun when it is "
                                          "quieter"), speed["output"]  # fmt: skip
        assert "not judged: machine too busy" in out
    else:
        assert speed["status"] == "passed" and speed["score"] == speed["max_score"] == 2
    assert res["score"] == res["extra_data"]["max_score"]
    print(f"busy machine: {SPEED} {'busy' if 'busy' in speed['tags'] else 'passed'}")
