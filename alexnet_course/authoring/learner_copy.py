"""What a learner's copy says and does that the instructor's checkout does not: its start
page (``README.md``, and the site's set-up page), its ``Makefile`` and its pytest settings.

Every command the start page names works in the copy (``tests/test_release.py`` builds a
release and runs each of them): no ``--solutions``, no project tests, no development
tooling, since the copy has no ``solutions/``, no ``tests/`` and no ``alexnet_course.devtools``.
"""

from __future__ import annotations

import re
from pathlib import Path

# What each lesson builds and what it needs, in the order to take them.
LESSONS = [
    ("01_data", "CIFAR-10 by hand: read the batch files, channel statistics, normalise, "
     "resize, augment, a stratified split, the same preprocessing in TensorFlow, a labelled "
     "image grid", "nothing: its tests write small batch files of their own (no CIFAR-10 "
     "download)"),
    ("02_torch_pretrained", "torchvision's ImageNet AlexNet with a new 10-class head: the "
     "weights API, frozen features, the weights' own preprocessing, two learning rates, "
     "fine-tuning", "nothing to download for its tests (they write a weights file of the "
     "right shapes); the real ImageNet weights (233 MB) only for the comparison's "
     "pretrained arms"),
    ("03_torch_scratch", "the 2012 paper's AlexNet in PyTorch, layer by layer, its "
     "initialisation, then `train_one_epoch`, `evaluate`, `fit`, and a speed check",
     "no data; a GPU is optional (its GPU-only tests are listed as \"not run here\")"),
    ("04_keras_scratch", "the same AlexNet in Keras 3, a port of PyTorch weights into it, a "
     "`tf.GradientTape` step, `model.fit` with callbacks, evaluation, a speed check",
     "TensorFlow (installed with everything else); no data"),
    ("05_analysis", "the comparison from `results.json` files: confusion matrix, the table, "
     "learning curves, the overfitting gap, what pretraining buys, a written analysis",
     "nothing: its tests make up their own results"),
]

README = """\
# alexnet-course: your copy

You rebuild **AlexNet** (Krizhevsky, Sutskever and Hinton, 2012) yourself, in **PyTorch**
and in **Keras**, train it on **CIFAR-10**, and compare it with an ImageNet-pretrained
AlexNet. Each lesson is a file with `# TODO: Task N.M` places for you to fill in, a page
that explains each task, and graded tests that say what is wrong and where to read.

## Start here

You need Python 3.10 or newer and `make`. One command creates a virtual environment in
`.venv`, installs everything into it (torch, torchvision, TensorFlow and the rest: about
3 GB of wheels the first time) and runs lesson 01's tests:

```bash
make test LESSON=01_data
```

Every test fails as NOT STARTED: that is where you start. Open
`lessons/01_data/data.py`, find `# TODO: Task 1.1`, read the task's page,
`docs/lessons/01_data.md` (the comment under the TODO links its section), write your
code, and run that one task:

```bash
.venv/bin/pytest lessons/01_data -m task1_1
```

Lesson 01 needs no CIFAR-10 download: its tests write small batch files of their own. Go
on task by task, then lesson by lesson, in the order below. The pages read best as the
course site, with formulas and tabs: `make serve`, then open http://127.0.0.1:8000
(Ctrl-C stops it).

## The lessons, in order

| lesson | you build | it needs |
| --- | --- | --- |
{lesson_rows}

Run one lesson's tests with `.venv/bin/pytest lessons/NN_name`, one task's with
`-m taskN_M` (as above), and every lesson with `make test`.

## Reading the score

Every run ends with your points per task and a total per lesson. Here is lesson 05 with
tasks 5.1 and 5.2 done:

```text
{score_example}
```

- **done**: every test of the task passes; **to do**: some fail (the failure above the
  table says what was expected, what came out, and which page section helps);
  **not started**: the task's code is still the stub's `raise NotImplementedError`.
- A test that needs a CUDA GPU is listed as `not run here (needs CUDA)` on a machine
  without one, and its points are left out of the total.
- A time limit or a speed check that cannot be judged because the machine is busy is
  listed as `not judged: machine too busy (rerun when it is quieter)`, and counted
  neither way: it never means your code is wrong.

`make test` runs every lesson's graded tests and prints the score of each; it passes (exit
code 0) when every lesson is done (all five took 52 s on the course's 2-core build
machine with nothing else running, and up to 3.0 GB of memory: lesson
04's tests hold TensorFlow and PyTorch models at once).

## Your own comparison

Once lessons 01 to 05 are done, the comparison runs on your own code: your split and
statistics (lesson 01), your pretrained model's preprocessing (02), your networks and
training loops (03, 04) and your analysis (05). Try it first on generated data (nothing
downloaded; 1 min 38 s on the course's 2-core build machine):

```bash
.venv/bin/alexnet-course compare --impl lessons --profile smoke
```

It stops at once, in one line, when a task it needs is not finished yet, naming the task
and its page. It writes `runs/compare/`: a `results.json` per arm and `report.md`, whose
comparison your lesson 05 wrote (the pretrained arms are skipped, with the reason, until
the ImageNet weights are cached).

On the real CIFAR-10 (170 MB, downloaded with a checksum):

```bash
.venv/bin/alexnet-course data download
.venv/bin/alexnet-course data info
.venv/bin/alexnet-course compare --impl lessons --budget-minutes 60
```

`data info` shows what was found (counts per class, your lesson 01's channel statistics).
`--budget-minutes 60` fits the whole comparison into an hour on your machine: it measures
a few training steps first and scales every arm's epochs alike. Without a network, put
the official `cifar-10-batches-py/` folder under `./data` (or point `--data-dir` at the
folder holding it), and `alexnet-course data synth data` writes a small generated stand-in
in the same layout.
"""

MAKEFILE = """\
# Your copy of alexnet-course. Each target creates .venv and installs everything first:
#   make test                         # every lesson's graded tests, your score per lesson
#   make test LESSON=03_torch_scratch # one lesson; PYTEST_ARGS="-m task3_2" for one task
#   make serve                        # the course site at http://127.0.0.1:8000
# Overrides: PYTHON=python3.11, TORCH_PKGS="torch torchvision" (e.g. on a Mac), ADDR=host:port.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PKGS ?= {torch_pkgs}
ADDR ?= 127.0.0.1:8000
STAMP := $(VENV)/.installed-learner

.PHONY: install test serve clean

$(STAMP): pyproject.toml
\t$(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet --upgrade pip
\t$(BIN)/python -m pip install --quiet $(TORCH_PKGS)
\t$(BIN)/python -m pip install --quiet -e ".[docs]"
\ttouch $@

install: $(STAMP)

test: $(STAMP)  # one process: the score table needs every test's outcome
\t$(BIN)/python -m pytest $(if $(LESSON),lessons/$(LESSON),lessons) $(PYTEST_ARGS)

serve: $(STAMP)  # the site, rebuilt as you edit the pages
\t$(BIN)/mkdocs serve -a $(ADDR)

clean:
\trm -rf $(VENV) runs site
"""

SCORE_EXAMPLE = """\
====================== alexnet-course score (your files) =======================
lesson                task     tests    points  status
05_analysis           5.1        1/1       3/3  done
05_analysis           5.2        1/1       3/3  done
05_analysis           5.3        0/1       0/2  not started
05_analysis           5.4        0/1       0/2  not started
05_analysis           5.5        0/2       0/3  not started
05_analysis: 6/13"""


def readme() -> str:
    """The learner's start page."""
    rows = "\n".join(f"| `{name}` | {builds} | {needs} |" for name, builds, needs in LESSONS)
    return README.format(lesson_rows=rows, score_example=SCORE_EXAMPLE)


def makefile(course: Path) -> str:
    """The learner's Makefile, installing the torch versions the course's own Makefile pins."""
    pins = re.search(r"^TORCH_PKGS \?= (.+)$", (course / "Makefile").read_text(), re.M)
    return MAKEFILE.format(torch_pkgs=pins.group(1) if pins else "torch torchvision")


def learner_pyproject(text: str) -> str:
    """The course's pyproject.toml with pytest collecting the lessons (the copy has no
    tests/: a bare ``pytest`` would warn that its testpaths matched nothing)."""
    new, n = re.subn(r'^testpaths = \[.*\]$', 'testpaths = ["lessons"]', text, flags=re.M)
    if n != 1:
        raise ValueError("pyproject.toml: no [tool.pytest.ini_options] testpaths line to rewrite")
    return new


def write(course: Path, out: Path) -> None:
    """Write the learner's start page (README.md and the site's set-up page), Makefile and
    pytest settings into the copy at ``out``."""
    text = readme()
    (out / "README.md").write_text(text)
    setup = out / "docs" / "setup.md"
    if setup.parent.is_dir():
        setup.write_text("# Set-up" + text[text.index("\n"):])
    (out / "Makefile").write_text(makefile(course))
    pyproject = out / "pyproject.toml"
    pyproject.write_text(learner_pyproject(pyproject.read_text()))
