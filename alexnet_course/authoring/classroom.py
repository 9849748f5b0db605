"""GitHub Classroom: ``alexnet-course release --classroom`` adds a workflow to the learner's
copy, one ``autograding-command-grader`` step per task with that task's points. It runs in
the learner's own repository: feedback, not proof."""

from __future__ import annotations

import tempfile
from pathlib import Path

from alexnet_course.authoring.bundle import CPU_TORCH_INDEX, constraints
from alexnet_course.grading.grader import collect, read_lessons

WORKFLOW_HEAD = """# GitHub Classroom autograding for alexnet-course, written by `alexnet-course release
# --classroom`. It runs in the learner's own repository: feedback, not proof. For marks that
# count, grade with Gradescope or `alexnet-course grade`.
name: Autograding Tests
'on':
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v5
      - name: Set up Python
        uses: actions/setup-python@v6
        with:
          python-version: '3.11'
      - name: Cache the virtual environment
        id: venv-cache
        uses: actions/cache@v5
        with:
          path: .venv
          key: venv-${{{{ runner.os }}}}-py311-${{{{ hashFiles('pyproject.toml', '.github/constraints.txt') }}}}
      - name: Install the course (CPU build of torch)
        if: steps.venv-cache.outputs.cache-hit != 'true'
        run: |
          python -m venv .venv
          .venv/bin/python -m pip install --quiet --upgrade pip
          .venv/bin/python -m pip install --quiet --index-url {cpu_index} --extra-index-url https://pypi.org/simple -c .github/constraints.txt torch torchvision
          .venv/bin/python -m pip install --quiet -c .github/constraints.txt -e .
      - name: Link the course into the cached environment
        if: steps.venv-cache.outputs.cache-hit == 'true'
        run: .venv/bin/python -m pip install --quiet --no-deps -e .
"""


def task_points(course: Path, lessons: list[str] | None = None) -> list[tuple[str, str, float]]:
    """(lesson, task, points) for every task, in order, from the trusted collection; GPU-only
    tests are left out (hosted runners have no GPU)."""
    from alexnet_course.course import task_key

    out = []
    with tempfile.TemporaryDirectory(prefix="collect-") as tmp:
        for spec in read_lessons(course, lessons, None):
            per: dict[str, float] = {}
            for t in collect(spec, Path(tmp) / spec.name):
                if not t.get("gpu_only") and not t.get("gpu"):
                    per[t["task"]] = per.get(t["task"], 0.0) + float(t["points"])
            out += [(spec.name, task, per[task]) for task in sorted(per, key=task_key)]
    return out


def classroom_workflow(tasks: list[tuple[str, str, float]], timeout_minutes: int = 10) -> str:
    """The workflow text: one autograding-command-grader step per task, then the reporter."""
    text = WORKFLOW_HEAD.format(cpu_index=CPU_TORCH_INDEX)
    ids = []
    for lesson, task, points in tasks:
        sid = "task-" + task.replace(".", "-")
        ids.append(sid)
        text += f"""      - name: {lesson} task {task}
        id: {sid}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: {lesson} task {task}
          setup-command: ''
          command: .venv/bin/python -m pytest lessons/{lesson} -m task{task.replace(".", "_")} -q -p no:cacheprovider
          timeout: {timeout_minutes}
          max-score: {points:g}
"""
    text += """      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
"""
    for sid in ids:
        text += f"          {sid.upper()}_RESULTS: \"${{{{steps.{sid}.outputs.result}}}}\"\n"
    text += f"""        with:
          runners: {",".join(ids)}
"""
    return text


def add_classroom(course: Path, release_dir: Path) -> Path:
    """Write ``.github/workflows/classroom.yml`` (and the pinned constraints) into a release."""
    wf = release_dir / ".github" / "workflows" / "classroom.yml"
    wf.parent.mkdir(parents=True, exist_ok=True)
    wf.write_text(classroom_workflow(task_points(course)))
    (release_dir / ".github" / "constraints.txt").write_text(constraints())
    return wf
