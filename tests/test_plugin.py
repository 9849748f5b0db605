"""The grading plugin: task selection, score table, results.json, not-started, time limits
and learner import errors. Each case runs pytest in a fresh process on a tiny lesson."""

from __future__ import annotations

import json
import tempfile
import textwrap
from pathlib import Path

import pytest

from alexnet_course.grading.load import SHARE_ENV
from tests.conftest import run_pytest

TESTS = '''
import pytest
from alexnet_course.grading import learner
mod = learner.load(__file__, "mod")

@pytest.mark.task("9.1", points=2)
def test_one():
    assert mod.one() == 1

@pytest.mark.task("9.2", points=3)
def test_two():
    assert mod.two() == 2

@pytest.mark.task("9.2", points=1)
def test_two_again():
    assert mod.two() + 1 == 3
'''


def lesson(tmp_path, mod_source: str, tests: str = TESTS):
    d = tmp_path / "09_demo"
    d.mkdir()
    (d / "test_demo.py").write_text(textwrap.dedent(tests))
    (d / "mod.py").write_text(textwrap.dedent(mod_source))
    return d


def test_score_table_and_results_json(tmp_path):
    d = lesson(tmp_path, "def one():\n    return 1\ndef two():\n    return 3\n")
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    assert rc == 1
    assert "09_demo: 2/6" in out
    assert res["score"] == 2 and res["extra_data"]["max_score"] == 6
    t = {x["name"].split(": ")[1]: x for x in res["tests"]}
    assert t["test_one"]["status"] == "passed" and t["test_one"]["score"] == 2
    assert t["test_two"]["status"] == "failed" and t["test_two"]["max_score"] == 3
    assert "assert 3 == 2" in t["test_two"]["output"]
    for x in res["tests"]:
        assert set(x) >= {"name", "score", "max_score", "status", "output", "visibility"}
    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra is not installed")
    schema = json.loads((Path(__file__).parent / "schemas" / "gradescope_results.schema.json").read_text())
    jsonschema.validate(res, schema)


def test_one_gradescope_writer_for_a_local_run_and_the_grader():
    """The plugin's --results-json and the class grader's results.json come from one writer
    (alexnet_course.grading.results): the same outcomes give the same file."""
    from alexnet_course.grading import plugin
    from alexnet_course.grading.results import SubmissionResult, TestResult, gradescope_json

    tests = [TestResult("09_demo/test_demo.py::test_one", "09_demo", "9.1", 2.0, status="passed"),
             TestResult("09_demo/test_demo.py::test_two", "09_demo", "9.2", 3.0, output="assert 3 == 2"),
             TestResult("09_demo/test_demo.py::test_gpu", "09_demo", "9.3", 1.0, status="skipped"),
             TestResult("09_demo/test_demo.py::test_fast", "09_demo", "9.4", 1.0, status="busy")]
    board = plugin.Scoreboard({t.nodeid: t for t in tests})
    local = plugin.write_results_json(board, Path(tempfile.mkdtemp()) / "r.json")
    graded = gradescope_json(SubmissionResult("x", tests=tests))
    for d in (local, graded):
        d.pop("execution_time")
    assert local == graded
    assert (local["score"], local["extra_data"]["max_score"]) == (2, 5)
    assert [t.get("status") for t in local["tests"]] == ["passed", "failed", None, None]


def test_select_one_task_with_minus_m(tmp_path):
    d = lesson(tmp_path, "def one():\n    return 1\ndef two():\n    return 2\n")
    rc, res, out = run_pytest(d, "-m", "task9_2", results=tmp_path / "r.json")
    assert rc == 0 and len(res["tests"]) == 2 and res["score"] == 4
    assert "Unknown pytest.mark" not in out


def test_not_implemented_is_reported_as_not_started(tmp_path):
    d = lesson(tmp_path, 'def one():\n    raise NotImplementedError("Task 9.1 not started")\n'
                         "def two():\n    return 2\n")
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    assert "NOT STARTED" in out and "not started: Task 9.1 not started" in out
    t = res["tests"][0]
    assert t["status"] == "failed" and "not started" in t["tags"]


def test_import_error_fails_only_the_tests_with_a_clear_message(tmp_path):
    d = lesson(tmp_path, "def one(:\n")
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    assert rc == 1 and res["score"] == 0 and len(res["tests"]) == 3
    assert "could not import mod.py (line 1): SyntaxError" in res["tests"][0]["output"]


QUIET, BUSY = {SHARE_ENV: "1.0"}, {SHARE_ENV: "0.4"}  # what the load probe reads


def test_endless_loop_hits_the_time_limit(tmp_path):
    d = lesson(tmp_path, "def one():\n    while True:\n        pass\ndef two():\n    return 2\n")
    rc, res, out = run_pytest(d, "--task-timeout", "2", results=tmp_path / "r.json", timeout=60,
                              env=QUIET)  # fmt: skip
    assert res["score"] == 4 and res["extra_data"]["max_score"] == 6
    assert "ran longer than 2 s on a machine that was not busy" in res["tests"][0]["output"]
    assert "loop forever" in res["tests"][0]["output"]


def test_a_busy_machine_is_not_the_learners_bug(tmp_path):
    """Locally, a test that runs past its limit on a busy machine is not judged: the limit
    grew with the load measured at the start (1 s at 40% of a core: 2.5 s), then by one more
    window; past that, the learner reads that the machine was too busy, and the test is
    listed without counting, like a GPU test on a machine without one."""
    d = lesson(tmp_path, "import time\ndef one():\n    time.sleep(60)\n"
                         "def two():\n    time.sleep(1.8)\n    return 2\n")  # fmt: skip
    rc, res, out = run_pytest(d, "--task-timeout", "1", results=tmp_path / "r.json", timeout=60,
                              env=BUSY)  # fmt: skip
    assert rc == 0, out[-2000:]
    assert res["score"] == 4 and res["extra_data"]["max_score"] == 4  # 1.8 s passes under the grown limit
    one = next(t for t in res["tests"] if t["name"].endswith("test_one"))
    assert "status" not in one and one["max_score"] == 0 and "busy" in one["tags"]
    assert one["output"].startswith("machine too busy to judge speed: rerun when it is quieter")
    assert "ran past its time limit of 5 s (1 s on a quiet machine" in one["output"]
    assert "loop forever" not in out
    assert "9.1        -/1       (2)  not judged: machine too busy (rerun when it is quieter)" in out
    assert "09_demo: 4/4   (+2 points not judged: the machine was too busy" in out


def test_no_busy_excuse_under_the_grader_or_when_asked(tmp_path):
    """--busy-machine decide (always so under the class grader, which passes
    --lesson-budget): the limit is as given and a busy verdict fails the test, counted."""
    tests = TESTS + '''
@pytest.mark.task("9.3", points=1)
def test_check_says_busy():
    from alexnet_course.grading.load import MachineBusy
    raise MachineBusy("machine too busy to judge speed")
'''
    d = lesson(tmp_path, "import time\ndef one():\n    time.sleep(60)\n"
                         "def two():\n    time.sleep(1.8)\n    return 2\n", tests)  # fmt: skip
    for args in (["--busy-machine", "decide"], ["--lesson-budget", "100"]):
        rc, res, out = run_pytest(d, "--task-timeout", "1", *args, results=tmp_path / "r.json",
                                  timeout=60, env=BUSY)  # fmt: skip
        assert rc == 1 and res["extra_data"]["max_score"] == 7 and res["score"] == 0, (args, out[-2000:])
        by = {t["name"].split(": ")[-1]: t for t in res["tests"]}
        assert "ran longer than 1 s; does your code loop forever" in by["test_one"]["output"]
        assert "not judged: the machine was too busy" in by["test_check_says_busy"]["output"]
        assert "not judged: machine too busy" not in out


def test_learner_skip_scores_zero(tmp_path):
    d = lesson(tmp_path, "import pytest\ndef one():\n    pytest.skip('nope')\n"
                         "def two():\n    return 2\n")
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    assert res["extra_data"]["max_score"] == 6 and res["score"] == 4


def test_gpu_tests_are_skipped_with_a_reason_and_not_counted(tmp_path):
    tests = TESTS + '''
@pytest.mark.gpu
@pytest.mark.task("9.3", points=5)
def test_gpu():
    import torch
    assert torch.cuda.is_available()
'''
    d = lesson(tmp_path, "def one():\n    return 1\ndef two():\n    return 2\n", tests)
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    import torch

    if torch.cuda.is_available():
        assert res["extra_data"]["max_score"] == 11
    else:  # listed with its points in the table, without -rs, and not in the total
        assert rc == 0 and res["extra_data"]["max_score"] == 6
        assert "9.3        -/1       (5)  not run here (needs CUDA)" in out
        assert "(+5 points in GPU tests not run here: needs CUDA)" in out
    assert "benchmark:" not in out


def test_a_test_that_needs_an_unfinished_task_names_it(tmp_path):
    tests = TESTS + '''
@pytest.mark.task("9.3", points=1)
def test_three_uses_one():
    assert mod.one() + 2 == 3
'''
    d = lesson(tmp_path, "def one():\n    raise NotImplementedError('Task 9.1 not started')\n"
                         "def two():\n    return 2\n", tests)  # fmt: skip
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    three = next(t for t in res["tests"] if t["number"] == "9.3")
    assert three["output"].startswith("needs Task 9.1 (not started)")
    one = next(t for t in res["tests"] if t["name"].endswith("test_one"))
    assert one["output"].startswith("not started")


def test_a_speed_ratio_is_excused_only_when_the_noise_could_explain_it(monkeypatch):
    """Lessons 03's and 04's speed checks: a ratio under the bar is "too busy to judge" only
    when the run's own timing noise could account for the shortfall and the machine is busy;
    never under the class grader's rule."""
    from alexnet_course.grading import load

    def verdict(ratio, noise, share, excuse=True):
        monkeypatch.setenv(SHARE_ENV, str(share))
        load.configure(excuse=excuse)
        return load.too_busy_to_judge(ratio, 0.8, noise)

    try:
        assert verdict(0.85, 1.0, 0.3) is None  # over the bar: passes, busy or not
        assert verdict(0.3, 1.5, 0.3) is None  # far under it: slow code, busy or not
        assert verdict(0.78, 1.05, 1.0) is None  # a quiet machine, steady timings: it stands
        why = verdict(0.7, 1.3, 1.0)  # quiet now, but the timings were disturbed
        assert why and "0.70x" in why and "1.30x" in why
        assert verdict(0.78, 1.05, 0.4)  # steady timings, but a busy machine
        assert verdict(0.7, 1.05, 0.4) is None  # more than the noise explains: it fails
        assert verdict(0.7, 1.3, 0.4, excuse=False) is None  # the grader decides as measured
    finally:
        load.configure(excuse=True)
