"""The built course site in headless Chromium: every main page renders without console
errors or requests outside localhost, the content tabs switch, the formulas are typeset,
and the results page shows its table and figures. Skipped, with the reason, where the docs
extra or a Chromium is missing; `.ci/run` installs Debian's chromium."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT


def _needs_browser():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e .[docs])")
    pytest.importorskip("playwright", reason="Playwright is not installed (the docs extra)")
    from alexnet_course.site import find_chromium

    if not find_chromium():
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; or set "
                    "$CHROMIUM)")  # fmt: skip


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    _needs_browser()
    from alexnet_course.site import build

    return build(tmp_path_factory.mktemp("site") / "site", ROOT)


@pytest.mark.slow
def test_every_main_page_is_fine_in_chromium(built_site):
    from alexnet_course.site import LESSON_PAGES, check_site

    reports = check_site(built_site)
    bad = {r.path: r.problems for r in reports if r.problems}
    assert not bad, bad
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
    from alexnet_course.site import check_site

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


@pytest.mark.slow
def test_screenshots_of_the_main_pages(built_site, tmp_path):
    from alexnet_course.site import SCREENSHOT_PAGES, screenshots

    written = screenshots(built_site, tmp_path / "shots")
    assert len(written) == len(SCREENSHOT_PAGES)
    for png in written:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png
