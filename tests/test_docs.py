"""The course site: every docs link the graded tests and stubs print exists, every task has
its section, and the site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from alexnet_course.authoring.stubs import tasks_of
from tests.conftest import ROOT

LINK = re.compile(r"docs/lessons/(\d\d_[a-z0-9_]+)\.md(?:#(task-[\d-]+))?")


def anchors(page) -> set[str]:
    return set(re.findall(r"\{#(task-[\d-]+)\}", page.read_text()))


def test_every_docs_link_in_lessons_exists():
    missing = []
    for f in sorted((ROOT / "lessons").rglob("*.py")):
        for lesson, anchor in LINK.findall(f.read_text()):
            page = ROOT / "docs" / "lessons" / f"{lesson}.md"
            if not page.exists() or (anchor and anchor not in anchors(page)):
                missing.append(f"{f.relative_to(ROOT)} -> {lesson}.md#{anchor}")
    assert not missing, "docs links to nowhere:\n" + "\n".join(sorted(set(missing)))


def test_every_task_has_a_docs_section():
    for sol in sorted((ROOT / "solutions").iterdir()):
        page = ROOT / "docs" / "lessons" / f"{sol.name}.md"
        assert page.exists(), f"no docs page for {sol.name}"
        want = {"task-" + t.replace(".", "-") for t in tasks_of(sol)}
        assert want <= anchors(page), f"{page.name} lacks {sorted(want - anchors(page))}"


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
    pytest.importorskip("material", reason="mkdocs-material is not installed (the docs extra)")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for page in ("index.html", "lessons/03_torch_scratch/index.html", "instructors/index.html"):
        assert (tmp_path / "site" / page).exists(), page


@pytest.mark.slow
def test_comparison_notebook_runs_on_smoke_results(smoke_run, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the docs extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the docs extra is not installed")
    pytest.importorskip("ipykernel", reason="the docs extra is not installed")
    out, _ = smoke_run
    monkeypatch.setenv("ALEXNET_COURSE_RUN", str(out))
    nb = nbformat.read(ROOT / "docs" / "comparison.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "docs")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))  # fmt: skip
    assert "| torch-scratch | ok |" in text and "synthetic" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["01_data", "02_torch_pretrained", "03_torch_scratch", "04_keras_scratch", "05_analysis"]
)
def test_lesson_notebooks_run_against_the_solutions(name, monkeypatch, request):
    nbformat = pytest.importorskip("nbformat", reason="the docs extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the docs extra is not installed")
    pytest.importorskip("ipykernel", reason="the docs extra is not installed")
    monkeypatch.setenv("ALEXNET_COURSE_IMPL", "solutions")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws figures
    if name == "02_torch_pretrained":  # offline: a weights file of the right shapes
        monkeypatch.setenv("TORCH_HOME", str(request.getfixturevalue("fake_torch_home")))
    if name == "05_analysis":  # every arm ran in the smoke run, so every cell has numbers
        monkeypatch.setenv("ALEXNET_COURSE_RUN", str(request.getfixturevalue("smoke_run")[0]))
    nb = nbformat.read(ROOT / "docs" / "lessons" / f"{name}_notebook.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()  # fmt: skip
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the notebook drew no figure"
    if name == "02_torch_pretrained":
        assert "trainable   54,575,114   frozen    2,469,696" in text
    if name == "05_analysis":
        assert "pretraining buys" in text and "cannot compare" not in text


def test_every_notebook_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for nb in sorted((ROOT / "docs").rglob("*.ipynb")):
        assert str(nb.relative_to(ROOT / "docs")) in nav, f"{nb.name} is not in mkdocs.yml's nav"
    for lesson in sorted((ROOT / "solutions").iterdir()):
        assert (ROOT / "docs" / "lessons" / f"{lesson.name}_notebook.ipynb").exists(), lesson.name
