"""The grading plugin: task selection, score table, results.json, not-started, time limits
and learner import errors. Each case runs pytest in a fresh process on a tiny lesson."""

from __future__ import annotations

import textwrap

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
    assert res["score"] == 2 and res["max_score"] == 6
    t = {x["name"].split(": ")[1]: x for x in res["tests"]}
    assert t["test_one"]["status"] == "passed" and t["test_one"]["score"] == 2
    assert t["test_two"]["status"] == "failed" and t["test_two"]["max_score"] == 3
    assert "assert 3 == 2" in t["test_two"]["output"]
    for x in res["tests"]:
        assert set(x) >= {"name", "score", "max_score", "status", "output", "visibility"}


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


def test_endless_loop_hits_the_time_limit(tmp_path):
    d = lesson(tmp_path, "def one():\n    while True:\n        pass\ndef two():\n    return 2\n")
    rc, res, out = run_pytest(d, "--task-timeout", "2", results=tmp_path / "r.json", timeout=60)
    assert res["score"] == 4
    assert "ran longer than 2 s" in res["tests"][0]["output"]


def test_learner_skip_scores_zero(tmp_path):
    d = lesson(tmp_path, "import pytest\ndef one():\n    pytest.skip('nope')\n"
                         "def two():\n    return 2\n")
    rc, res, out = run_pytest(d, results=tmp_path / "r.json")
    assert res["max_score"] == 6 and res["score"] == 4


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
        assert res["max_score"] == 11
    else:  # listed with its points in the table, without -rs, and not in the total
        assert rc == 0 and res["max_score"] == 6
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
