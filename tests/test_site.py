"""The built course site in headless Chromium: every main page renders without console
errors or requests outside localhost, the content tabs switch, the formulas are typeset,
the results page shows its table and figures, nothing is wider than the content column at
1280 px, every figure loads, and every notebook code cell shows its output. Skipped, with the
reason, where the docs extra or a Chromium is missing; `.ci/run` installs Debian's chromium.

The notebooks are committed executed: a cheap test (no browser, no kernel) checks that their
outputs are current."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import ROOT


def _needs_browser():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
    pytest.importorskip("playwright", reason="Playwright is not installed (the docs extra)")
    from alexnet_course.devtools.site import find_chromium

    if not find_chromium():
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; or set "
                    "$CHROMIUM)")  # fmt: skip


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    _needs_browser()
    from alexnet_course.devtools.site import build

    return build(tmp_path_factory.mktemp("site") / "site", ROOT)


@pytest.mark.slow
def test_every_main_page_is_fine_in_chromium(built_site, tmp_path):
    from alexnet_course.devtools.site import LESSON_PAGES, SCREENSHOT_PAGES, check_site, shot_path

    reports = check_site(built_site, shots=tmp_path / "shots")
    bad = {r.path: r.problems for r in reports if r.problems}
    assert not bad, bad
    # a full-page screenshot of every page, taken on the same visit (`site shots` writes them)
    for path in SCREENSHOT_PAGES:
        png = shot_path(tmp_path / "shots", path)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, path
    by_path = {r.path: r for r in reports}
    assert len(reports) >= 18
    # the PyTorch | Keras tabs switch, linked across the page, on every lesson page with tabs
    tabbed = [p for p in LESSON_PAGES if any("tab 'Keras'" in c for c in by_path[p].checks)]
    assert len(tabbed) >= 3, {p: by_path[p].checks for p in LESSON_PAGES}
    assert any("typeset" in c for c in by_path["lessons/03_torch_scratch/"].checks)
    assert any("figures" in c for c in by_path["results/"].checks)
    linked = [r for r in reports if "linked tabs" in r.path]
    assert linked and linked[0].checks, "the tab picked on one page was not checked on the next"


@pytest.mark.slow
def test_the_check_fails_a_broken_page(tmp_path):
    """A page that throws, logs an error and asks a CDN for a script is reported."""
    _needs_browser()
    from alexnet_course.devtools.site import check_site

    page = tmp_path / "broken"
    page.mkdir()
    (page / "index.html").write_text(
        "<html><body><p>hi</p><script>console.error('boom');</script>"
        "<script>undefinedFunction();</script>"
        '<script src="https://cdn.example.invalid/x.js"></script></body></html>'
    )
    (report,) = check_site(tmp_path, pages=["broken/"])
    text = "\n".join(report.problems)
    assert "console error: boom" in text
    assert "undefinedFunction" in text
    assert "request outside localhost: https://cdn.example.invalid/x.js" in text


# A page laid out like Material's: the content column is article.md-content__inner, tables sit
# in a horizontally scrolling .md-typeset__scrollwrap, code blocks scroll inside .highlight.
PAGE = """<html><head><style>
body {{ margin: 0; font: 16px sans-serif }}
.md-content__inner {{ display: block; width: 600px; margin: 0 auto }}
.md-typeset__scrollwrap {{ margin: 1em -16px; overflow-x: auto }}
.md-typeset__table {{ display: inline-block; padding: 0 16px }}
.highlight pre {{ overflow: auto }}
.jp-OutputArea-output pre {{ white-space: pre-wrap }}
.jp-InputArea-editor pre {{ overflow-x: auto }}
</style></head><body><div class="md-content"><article class="md-content__inner md-typeset">
<h1>A page</h1>{}</article></div></body></html>"""
LONG = "a_rather_long_identifier " * 12


def _page(tmp_path, name: str, body: str) -> str:
    (tmp_path / name).mkdir()
    (tmp_path / name / "index.html").write_text(PAGE.format(body))
    return f"{name}/"


@pytest.mark.slow
def test_the_check_fails_a_table_wider_than_the_column(tmp_path):
    """A table that needs a horizontal scrollbar at 1280 px is reported; a code block that
    scrolls is not, a table that fits is not."""
    _needs_browser()
    from alexnet_course.devtools.site import check_site

    row = "".join(f"<td style='white-space: nowrap'>{LONG[:60]}</td>" for _ in range(4))
    wide = _page(tmp_path, "wide", "<h2>Numbers</h2><div class='md-typeset__scrollwrap'><div "
                 f"class='md-typeset__table'><table><tr>{row}</tr></table></div></div>")  # fmt: skip
    fine = _page(tmp_path, "fine", "<div class='md-typeset__scrollwrap'><div class='md-typeset"
                 "__table'><table><tr><td>1</td><td>2</td></tr></table></div></div><div "
                 f"class='highlight'><pre><code>{LONG}</code></pre></div>")  # fmt: skip
    wide_report, fine_report = check_site(tmp_path, pages=[wide, fine])
    text = "\n".join(wide_report.problems)
    assert "wider than the 600px column" in text and "needs a horizontal scrollbar" in text, text
    assert 'table "a_rather_long' in text and 'under "Numbers"' in text, text
    assert all("\n" not in p for p in wide_report.problems)
    assert not fine_report.problems, fine_report.problems


@pytest.mark.slow
def test_the_check_fails_a_missing_or_overwide_figure(tmp_path):
    _needs_browser()
    from alexnet_course.devtools.site import check_site

    svg = ("data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' width='900' "
           "height='10'/>")  # fmt: skip
    page = _page(tmp_path, "figs", f'<p><img src="gone.png"></p><p><img src="{svg}"></p>')
    (report,) = check_site(tmp_path, pages=[page])
    text = "\n".join(report.problems)
    assert "figure missing (did not load): gone.png" in text, text
    assert "figure wider than the 600px column (900px)" in text, text


NB_CELL = ('<div class="jp-Cell jp-CodeCell jp-Notebook-cell{mod}"><div class="jp-Cell-inputWrapper">'
           '<div class="jp-InputArea jp-Cell-inputArea"><div class="jp-InputPrompt">In [1]:</div>'
           '<div class="jp-InputArea-editor"><div class="highlight-ipynb"><pre>{src}</pre></div>'
           "</div></div></div>{out}</div>")  # fmt: skip
NB_OUT = ('<div class="jp-Cell-outputWrapper"><div class="jp-OutputArea jp-Cell-outputArea">'
          '<div class="jp-OutputArea-child"><div class="jp-OutputArea-output"><pre>{}</pre>'
          "</div></div></div></div>")  # fmt: skip


@pytest.mark.slow
def test_the_check_fails_a_notebook_cell_without_output(tmp_path):
    """mkdocs-jupyter's markup: a code cell that printed nothing is reported unless it is
    marked; a long code line in a notebook cell must wrap, not scroll."""
    _needs_browser()
    from alexnet_course.devtools.site import NO_OUTPUT_MARKER, check_site

    cells = [NB_CELL.format(mod="", src='print("hi")', out=NB_OUT.format("hi")),
             NB_CELL.format(mod=" jp-mod-noOutputs", src="x = train(model)", out=""),
             NB_CELL.format(mod=" jp-mod-noOutputs", src=f"import os  {NO_OUTPUT_MARKER}", out=""),
             NB_CELL.format(mod="", src=LONG, out=NB_OUT.format(LONG))]  # fmt: skip
    page = _page(tmp_path, "nb", '<div class="jupyter-wrapper"><div class="jp-Notebook">'
                 + "".join(cells) + "</div></div>")  # fmt: skip
    (report,) = check_site(tmp_path, pages=[page])
    text = "\n".join(report.problems)
    assert "notebook code cell 2 ('x = train(model)') has no output" in text, text
    assert "cell 3" not in text and "cell 1 " not in text, text
    assert "needs a horizontal scrollbar" in text and 'pre "a_rather_long' in text, text
    assert sum("has no output" in p for p in report.problems) == 1, text
    assert any("2/4 code cells with output" in c for c in report.checks), report.checks


def test_the_notebooks_are_committed_executed_and_current():
    """Each site notebook records the hash of its code cells when `alexnet-course site
    notebooks` executes it; a code cell edited since, a code cell without output or an
    error in an output fails here (re-execute: alexnet-course site notebooks)."""
    pytest.importorskip("nbformat", reason="the docs extra is not installed (pip install -e .[docs])")
    from alexnet_course.devtools.notebooks import NOTEBOOKS, notebook_problems

    problems = [p for name in NOTEBOOKS for p in notebook_problems(ROOT / "docs" / name)]
    assert not problems, "\n".join(problems)


def test_the_notebook_check_sees_an_edited_cell_and_a_missing_output(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the docs extra is not installed")
    from alexnet_course.devtools.notebooks import NO_OUTPUT_MARKER, notebook_problems

    path = tmp_path / "nb.ipynb"
    shutil.copy(ROOT / "docs" / "lessons" / "03_torch_scratch_notebook.ipynb", path)
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].source += "\nprint('edited')"
    code[1].outputs = []
    nbformat.write(nb, path)
    text = "\n".join(notebook_problems(path))
    assert "a code cell changed since the notebook was executed" in text, text
    assert "has no output" in text, text
    code[1].source += f"  {NO_OUTPUT_MARKER}"
    nb.metadata.pop("alexnet_course")
    nbformat.write(nb, path)
    text = "\n".join(notebook_problems(path))
    assert "never executed" in text and "has no output" not in text, text


@pytest.mark.slow
def test_the_check_fails_small_figure_text_and_a_tall_results_page(tmp_path):
    """A figure is judged by its smallest text at the width the page shows it: the same
    figure passes at its own width and fails squeezed to a third; a comparison figure that
    records no text size fails; a results page over the height limit fails."""
    _needs_browser()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alexnet_course.compare.report import save_figure
    from alexnet_course.devtools.site import MAX_RESULTS_PX, check_site

    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([1, 2], [1, 2], label="a line")
    ax.set_title("a title", fontsize=9)
    ax.tick_params(labelsize=8)
    save_figure(fig, tmp_path / "fig.png", dpi=100)  # 8 points at 100 dpi: 11.1 px
    fig.savefig(tmp_path / "plain.png", dpi=100)
    plt.close(fig)
    for name in ("ok", "small", "results"):
        (tmp_path / name).mkdir()
    shutil.copy(tmp_path / "fig.png", tmp_path / "ok" / "fig.png")
    shutil.copy(tmp_path / "fig.png", tmp_path / "small" / "fig.png")
    shutil.copy(tmp_path / "plain.png", tmp_path / "results" / "plain.png")
    (tmp_path / "ok" / "index.html").write_text(PAGE.format('<p><img src="fig.png"></p>'))
    (tmp_path / "small" / "index.html").write_text(
        PAGE.format('<p><img src="fig.png" width="133"></p>'))
    tall = f'<div style="height: {MAX_RESULTS_PX + 500}px"></div>'
    (tmp_path / "results" / "index.html").write_text(PAGE.format(
        '<table><tbody><tr><td>torch-scratch</td></tr></tbody></table>'
        f'<p><img src="plain.png"></p>{tall}'))
    # (the first page opened also asks for /favicon.ico: a 404 the results page may carry)
    results, ok, small = check_site(tmp_path, pages=["results/", "ok/", "small/"])
    assert not ok.problems and any("at least 10px" in c for c in ok.checks), ok.problems
    assert any("smallest text is 3.7px" in p for p in small.problems), small.problems
    text = "\n".join(results.problems)
    assert "records no text size" in text and f"over {MAX_RESULTS_PX}px" in text, text
