"""The course site in a real browser: build it, serve it on localhost, open it in headless
Chromium, check it, take screenshots.

``alexnet-course site check`` (and the test suite) builds the site with ``mkdocs build
--strict``, serves it on 127.0.0.1 and opens every page in headless Chromium through
Playwright. A page fails when it logs a console error, throws, fails a request, or asks for
anything outside localhost (the site must work offline: no web fonts, no CDN scripts).
Content tabs must switch, linked across the page; the results page must show its table and
its images; the maths must be typeset. ``alexnet-course site screenshots OUT`` writes PNGs of
the main pages (nothing is committed: they are made on demand).

The browser is the system's Chromium (Debian's ``chromium`` package; ``$CHROMIUM`` names
another binary); Playwright drives it and downloads nothing.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from alexnet_course import CourseError

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Chromium's flags for a closed network (no background calls to Google) as root in a container
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
# The pages every check opens: (path under the site, what it must show)
LESSON_PAGES = ["lessons/01_data/", "lessons/02_torch_pretrained/", "lessons/03_torch_scratch/",
                "lessons/04_keras_scratch/", "lessons/05_analysis/"]  # fmt: skip
NOTEBOOK_PAGES = [f"{p.rstrip('/')}_notebook/" for p in LESSON_PAGES] + ["comparison/"]
OTHER_PAGES = ["", "setup/", "results/", "instructors/", "seed-notebook/", "architecture/",
               "reference/"]  # fmt: skip
SCREENSHOT_PAGES = ["", "lessons/03_torch_scratch/", "lessons/04_keras_scratch/", "results/",
                    "instructors/"]  # fmt: skip


def find_chromium() -> str | None:
    """The Chromium binary to drive: ``$CHROMIUM``, else the first of the usual names."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def build(out: Path, root: Path | None = None) -> Path:
    """``mkdocs build --strict`` into ``out``; a failure raises with mkdocs's own output."""
    from alexnet_course.grading.learner import course_root

    root = root or course_root()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(out)], cwd=root, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if proc.returncode:
        raise CourseError("mkdocs build --strict failed:\n" + (proc.stdout + proc.stderr)[-4000:])
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test output stays readable
        pass


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (a free port) for the ``with`` block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PageReport:
    """What one page did in the browser."""

    path: str
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


@contextmanager
def browser(executable: str | None = None):
    """A headless Chromium page driven by Playwright (no browser download)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise CourseError("the site check needs Playwright: pip install -e .[docs]") from e
    executable = executable or find_chromium()
    if not executable:
        raise CourseError("no Chromium found: install Debian's 'chromium' package (apt-get "
                          "install chromium) or set $CHROMIUM to a Chromium binary")  # fmt: skip
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open(b, url: str, report: PageReport, base: str):
    """Open ``url`` in a new page, recording every console error, exception, failed request
    and request that leaves localhost."""
    host = urlparse(base).netloc
    page = b.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: m.type == "error" and report.problems.append(
        f"console error: {m.text}"))  # fmt: skip
    page.on("pageerror", lambda e: report.problems.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: report.problems.append(
        f"request failed: {r.url} ({r.failure})"))  # fmt: skip

    def on_request(r) -> None:
        u = urlparse(r.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.netloc != host:
            report.problems.append(f"request outside localhost: {r.url}")

    page.on("request", on_request)
    response = page.goto(url, wait_until="networkidle")
    if response is None or response.status != 200:
        report.problems.append(f"HTTP {response.status if response else 'no response'}")
    return page


# For each content-tab set on the page: null when it has no tab of that name, else whether
# that tab is selected and whether its block is displayed.
TAB_STATE = """(name) => [...document.querySelectorAll('.tabbed-set')].map(set => {
    const labels = [...set.querySelectorAll(':scope > .tabbed-labels > label')];
    const i = labels.findIndex(l => l.innerText.trim() === name);
    if (i < 0) return null;
    const block = set.querySelectorAll(':scope > .tabbed-content > .tabbed-block')[i];
    return {checked: set.querySelectorAll(':scope > input')[i].checked,
            visible: block.offsetParent !== null};
})"""


def _check_tabs(page, report: PageReport) -> None:
    """Click each tab label of the first tab set; with ``content.tabs.link`` every other set
    on the page that has a tab of the same name must switch too."""
    sets = page.locator(".tabbed-set")
    if sets.count() == 0:
        return
    labels = sets.nth(0).locator(".tabbed-labels > label")
    for i in range(labels.count()):
        name = labels.nth(i).inner_text().strip()
        labels.nth(i).click()
        page.wait_for_timeout(50)
        shown = [s and s["checked"] and s["visible"] for s in page.evaluate(TAB_STATE, name)]
        wrong = [j for j, ok in enumerate(shown) if ok is False]
        if wrong:
            report.problems.append(f"tab {name!r} did not switch tab set(s) {wrong}")
        else:
            report.checks.append(f"tab {name!r} switched {sum(bool(s) for s in shown)} set(s)")


def _check_math(page, report: PageReport) -> None:
    pending = page.locator(".arithmatex")
    if pending.count() == 0:
        return
    page.wait_for_function("() => document.querySelectorAll('.arithmatex mjx-container').length"
                           " > 0", timeout=10_000)  # fmt: skip
    raw = page.evaluate("() => [...document.querySelectorAll('.arithmatex')]"
                        ".filter(e => !e.querySelector('mjx-container')).length")  # fmt: skip
    if raw:
        report.problems.append(f"{raw} formula(s) not typeset by MathJax")
    else:
        report.checks.append(f"{pending.count()} formula(s) typeset")


def _check_results(page, report: PageReport) -> None:
    rows = page.locator("table tbody tr")
    arms = [rows.nth(i).inner_text() for i in range(rows.count())]
    if not any("torch-scratch" in a for a in arms):
        report.problems.append("the results page shows no comparison table with torch-scratch")
    images = page.evaluate("() => [...document.querySelectorAll('article img')].map(i => "
                           "[i.getAttribute('src'), i.complete && i.naturalWidth > 0])")  # fmt: skip
    if not images:
        report.problems.append("the results page shows no figures")
    broken = [src for src, ok in images if not ok]
    if broken:
        report.problems.append(f"images that did not load: {broken}")
    report.checks.append(f"table with {len(arms)} rows, {len(images) - len(broken)} figures")


def _check_tabs_across_pages(b, base: str, first: str, second: str, tab: str) -> PageReport:
    """With ``content.tabs.link`` a tab picked on one page is the one shown on the next."""
    report = PageReport(f"{first} -> {second} (linked tabs)")
    context = b.new_context()
    try:
        page = context.new_page()
        page.goto(base + first, wait_until="networkidle")
        page.locator(".tabbed-labels > label", has_text=tab).first.click()
        page.goto(base + second, wait_until="networkidle")
        shown = [bool(s and s["checked"]) for s in page.evaluate(TAB_STATE, tab)]
        if not shown or not all(shown):
            report.problems.append(f"{tab!r} picked on {first} is not shown on {second}: {shown}")
        else:
            report.checks.append(f"{tab!r} picked on {first} is shown on {second}")
    finally:
        context.close()
    return report


def check_site(site: Path, executable: str | None = None,
               pages: list[str] | None = None) -> list[PageReport]:  # fmt: skip
    """Open every main page of a built site (or ``pages``) in headless Chromium; returns one
    report per page (``problems`` empty when the page is fine)."""
    reports = []
    everything = OTHER_PAGES + LESSON_PAGES + NOTEBOOK_PAGES
    pages = pages if pages is not None else everything
    with serve(site) as base, browser(executable) as b:
        for path in pages:
            report = PageReport(path or "/")
            if not (site / path / "index.html").is_file():
                report.problems.append("page missing from the built site")
                reports.append(report)
                continue
            page = _open(b, base + path, report, base)
            _check_tabs(page, report)
            _check_math(page, report)
            if path == "results/":
                _check_results(page, report)
            page.close()
            reports.append(report)
        if pages == everything:
            reports.append(_check_tabs_across_pages(b, base, "lessons/02_torch_pretrained/",
                                                    "lessons/04_keras_scratch/", "Keras"))  # fmt: skip
    return reports


def screenshots(site: Path, out: Path, executable: str | None = None) -> list[Path]:
    """Full-page PNGs of the main pages of a built site, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with serve(site) as base, browser(executable) as b:
        for path in SCREENSHOT_PAGES:
            page = _open(b, base + path, PageReport(path), base)
            target = out / ((path.strip("/").replace("/", "_") or "home") + ".png")
            page.screenshot(path=str(target), full_page=True)
            page.close()
            written.append(target)
    return written


def main(args) -> int:
    """``alexnet-course site check|screenshots``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        site = args.site or build(Path(tmp) / "site")
        if args.site_command == "screenshots":
            for p in screenshots(site, args.out, args.chromium):
                print(f"wrote {p}")
            return 0
        reports = check_site(site, args.chromium)
    bad = 0
    for r in reports:
        status = "ok" if not r.problems else "FAIL"
        print(f"{status:4} {r.path}  {'; '.join(r.checks)}")
        for p in r.problems:
            print(f"       {p}")
        bad += bool(r.problems)
    print(f"{len(reports) - bad}/{len(reports)} pages fine")
    return 1 if bad else 0
