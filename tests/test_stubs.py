"""The stub generator: committed stubs equal generated ones, fences are linted, and every
fenced task has graded tests."""

from __future__ import annotations

import re

import pytest

from alexnet_course.authoring.stubs import FenceError, generate, make_stub, parse_fences, tasks_of
from tests.conftest import ROOT


def test_committed_stubs_equal_generated_ones():
    drift = generate(ROOT / "solutions", ROOT / "lessons", check=True)
    assert not drift, f"run `alexnet-course stubs`: these differ from the solutions: {drift}"


def test_every_lesson_has_solutions_and_tests():
    lessons = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    assert lessons
    for lesson in lessons:
        tests = list((ROOT / "lessons" / lesson).glob("test_*.py"))
        assert tests, f"{lesson} has no graded tests"
        graded = set()
        for t in tests:
            graded |= set(re.findall(r'mark\.task\("([\d.]+)"', t.read_text()))
        fenced = set(tasks_of(ROOT / "solutions" / lesson))
        assert fenced <= graded, f"{lesson}: tasks without graded tests: {fenced - graded}"


def test_stub_replaces_fences_with_the_uniform_stub():
    src = ('"""Doc."""\n\ndef f(x):\n    """Task 3.1."""\n    ### BEGIN SOLUTION 3.1\n'
           "    return x\n    ### END SOLUTION 3.1\n")
    out = make_stub(src, "f.py", "03_torch_scratch")
    assert "return x" not in out and "BEGIN SOLUTION" not in out
    assert "    # TODO: Task 3.1 -- see docs/lessons/03_torch_scratch.md#task-3-1\n" in out
    assert 'raise NotImplementedError("Task 3.1 not started' in out
    assert out.startswith('"""Doc."""\n# Your file for lesson 03_torch_scratch')
    ns: dict = {}
    exec(compile(out, "f.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match="Task 3.1"):
        ns["f"](1)


@pytest.mark.parametrize("body, message", [
    ("### BEGIN SOLUTION 3.1\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION 3.1\n", "without a BEGIN"),
    ("### BEGIN SOLUTION 3.1\n### BEGIN SOLUTION 3.2\n", "do not nest"),
    ("### BEGIN SOLUTION 3.1\nx = 1\n### END SOLUTION 3.2\n", "closes BEGIN SOLUTION 3.1"),
    ("### BEGIN SOLUTION 4.1\nx = 1\n### END SOLUTION 4.1\n", "does not belong to lesson"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "needs a task id"),
    ("### BEGIN SOLUTON 3.1\n", "unrecognised fence"),
])  # fmt: skip
def test_fence_lint(body, message):
    with pytest.raises(FenceError, match=message) as e:
        parse_fences(body, "lesson.py", "03_torch_scratch")
    assert "lesson.py:" in str(e.value)


def test_stubs_command_check_reports_drift(tmp_path):
    from alexnet_course.cli import main

    (tmp_path / "solutions" / "03_x").mkdir(parents=True)
    (tmp_path / "lessons" / "03_x").mkdir(parents=True)
    (tmp_path / "solutions" / "03_x" / "m.py").write_text(
        "def f():\n    ### BEGIN SOLUTION 3.1\n    return 1\n    ### END SOLUTION 3.1\n")
    assert main(["stubs", "--check", "--root", str(tmp_path)]) == 1
    assert main(["stubs", "--root", str(tmp_path)]) == 0
    assert main(["stubs", "--check", "--root", str(tmp_path)]) == 0
    assert "NotImplementedError" in (tmp_path / "lessons" / "03_x" / "m.py").read_text()
