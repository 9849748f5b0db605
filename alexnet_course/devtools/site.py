"""The course site in a real browser: build it, serve it on localhost, open it in headless
Chromium, check it, take screenshots.

``alexnet-course site check`` (and the test suite) builds the site with ``mkdocs build
--strict``, serves it on 127.0.0.1 and opens every page in headless Chromium through
Playwright. A page fails when it logs a console error, throws, fails a request, or asks for
anything outside localhost (the site must work offline: no web fonts, no CDN scripts).
Content tabs must switch, linked across the page; the results page must show its table and
its images; the maths must be typeset. ``alexnet-course site screenshots OUT`` writes PNGs of
every page (nothing is committed: they are made on demand).

The layout, at a 1280x900 viewport, in the content column (``article.md-content__inner``),
checked on load and again with each content tab shown:

- nothing may be wider than the column: an element that needs a horizontal scrollbar (a
  table in Material's ``.md-typeset__scrollwrap``, a formula), is cut off, or sticks out of
  the column is reported, once, with its text and the heading it is under. Code blocks
  (``pre``/``code``) may scroll sideways, except in a notebook's code cells, whose long code
  and output lines wrap (docs/stylesheets/extra.css);
- every ``img`` must load (``naturalWidth > 0``) and be no wider than the column;
- every figure that records its smallest text (the comparison's figures do, in their PNG)
  shows it at least 10 px tall at the width the page shows it, in every tab; a figure under
  ``results/`` that records none fails, and the results page may be at most 15,000 px tall;
- on a notebook page (NOTEBOOK_PAGES, or any page with mkdocs-jupyter's ``.jp-Notebook``)
  every code cell (``.jp-CodeCell``) must show at least one output
  (``.jp-OutputArea-output``), unless its source holds the marker ``# no output`` (for a
  cell that honestly prints nothing). The rule is simple on purpose: a cell whose output
  the learner needs to see cannot silently lose it.

The notebooks are committed executed (mkdocs-jupyter runs with ``execute: false``, so the
site builds in seconds): ``alexnet-course site notebooks`` (``execute_notebooks``) runs each
with a fresh kernel against the reference solutions, on generated data or the committed run
under docs/results/cpu, with a random AlexNet in place of the ImageNet weights file (nothing
is downloaded; seconds to half a minute each), drops TensorFlow's C++ start-up log from the
outputs, and records the sha256 of the code cells in the notebook's metadata.
``notebook_problems`` (a test) fails a notebook whose code changed since, or with a code
cell without output (same marker) or with an error.

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
from alexnet_course.devtools.notebooks import NO_OUTPUT_MARKER, execute_notebooks, notebook_problems  # noqa: F401

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Chromium's flags for a closed network (no background calls to Google) as root in a container
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
# The pages every check opens: (path under the site, what it must show)
LESSON_PAGES = ["lessons/01_data/", "lessons/02_torch_pretrained/", "lessons/03_torch_scratch/",
                "lessons/04_keras_scratch/", "lessons/05_analysis/"]  # fmt: skip
NOTEBOOK_PAGES = [f"{p.rstrip('/')}_notebook/" for p in LESSON_PAGES] + ["comparison/"]
OTHER_PAGES = ["", "setup/", "results/", "scale-out/", "instructors/", "seed-notebook/",
               "architecture/", "reference/"]  # fmt: skip
SCREENSHOT_PAGES = OTHER_PAGES + LESSON_PAGES + NOTEBOOK_PAGES  # every page: read them all


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
    from alexnet_course.course import course_root

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


def _check_tabs(page, report: PageReport, notebook: bool = False) -> None:
    """Click each tab label of the first tab set; with ``content.tabs.link`` every other set
    on the page that has a tab of the same name must switch too. The layout is checked again
    with each tab shown."""
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
        _check_layout(page, report, notebook, quiet=True)


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


# The layout of the content column at the page's current state (tabs as they are): what is
# wider than the column, the figures, and on notebook pages the code cells. Code blocks may
# scroll sideways, except in a notebook's code cells, where lines wrap.
LAYOUT = r"""async ([marker, notebook]) => {
    const col = document.querySelector('article.md-content__inner')
        || document.querySelector('.md-content__inner') || document.querySelector('article');
    if (!col) return null;
    for (const img of col.querySelectorAll('img[loading="lazy"]')) img.loading = 'eager';
    await Promise.all([...col.querySelectorAll('img')].map(i => Promise.race([
        i.decode().catch(() => null), new Promise(r => setTimeout(r, 3000))])));
    const cs = getComputedStyle(col), box = col.getBoundingClientRect();
    const left = box.left + parseFloat(cs.paddingLeft), right = box.right - parseFloat(cs.paddingRight);
    const width = Math.round(right - left);
    const heads = [...col.querySelectorAll('h1, h2, h3, h4')];
    const where = (e) => {
        const h = heads.filter(h => h.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING).pop();
        return h ? ` under "${h.textContent.replace('¶', '').trim().slice(0, 40)}"` : '';
    };
    const name = (e) => {
        const wrap = e.matches('.md-typeset__scrollwrap, .md-typeset__table');
        const t = (wrap && e.querySelector('table')) || e;
        const text = (t.innerText || t.textContent || '').trim().replace(/\s+/g, ' ');
        const quoted = text ? ` "${text.slice(0, 40)}${text.length > 40 ? '…' : ''}"` : '';
        return t.tagName.toLowerCase() + quoted + where(e);
    };
    const codeScrolls = (e) => e.closest('pre, code, .highlight, .highlighttable')
        && !e.closest('.jp-CodeCell');
    const scrolls = (e) => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
    const wide = [], flagged = [];
    for (const e of col.querySelectorAll('*')) {
        if (e.tagName === 'IMG' || flagged.some(f => f.contains(e)) || codeScrolls(e)) continue;
        if (!e.getClientRects().length) continue;  // not displayed (a hidden tab)
        const st = getComputedStyle(e);
        const clips = ['auto', 'scroll', 'hidden', 'clip'].includes(st.overflowX);
        if (clips && e.scrollWidth > e.clientWidth + 1) {
            const how = scrolls(e) ? 'needs a horizontal scrollbar' : 'is cut off';
            wide.push(`${name(e)} ${how}: ${e.scrollWidth}px of content in ${e.clientWidth}px`);
            flagged.push(e);
            continue;
        }
        let up = e.parentElement, clipped = false;
        for (; up && up !== col && !clipped; up = up.parentElement)
            clipped = getComputedStyle(up).overflowX !== 'visible';
        if (clipped) continue;  // its scrolling ancestor is the one reported
        const r = e.getBoundingClientRect();
        const bleedL = Math.max(0, -parseFloat(st.marginLeft));  // a negative margin: by design
        const bleedR = Math.max(0, -parseFloat(st.marginRight));
        if (r.width && (r.right > right + bleedR + 1 || r.left < left - bleedL - 1)) {
            wide.push(`${name(e)} sticks out of the content column: ${Math.round(r.width)}px wide, `
                      + `${Math.round(Math.max(r.right - right, left - r.left))}px past its edge`);
            flagged.push(e);
        }
    }
    const images = [...col.querySelectorAll('img')].map(i => {
        const src = i.getAttribute('src') || '';
        return {src: src.startsWith('data:') ? src.slice(0, 15) + '…' + where(i) : src,
                loaded: i.complete && i.naturalWidth > 0,
                width: Math.round(i.getBoundingClientRect().width)};
    });
    let cells = null;
    if (notebook || col.querySelector('.jp-Notebook')) {
        cells = [...col.querySelectorAll('.jp-CodeCell')].filter(c => !c.querySelector('.jp-CodeCell'))
            .map((c, n) => {
                const src = (c.querySelector('.jp-InputArea-editor') || c).innerText;
                return {n: n + 1, first: src.trim().split('\n')[0].slice(0, 50),
                        outputs: c.querySelectorAll('.jp-OutputArea-output').length,
                        marked: src.includes(marker)};
            });
    }
    return {width, wide, images, cells, notebook: !!col.querySelector('.jp-Notebook')};
}"""
MAX_WIDE = 6  # over-wide elements listed per page; the rest are counted


def _add(report: PageReport, problem: str) -> None:
    if problem not in report.problems:
        report.problems.append(problem)


def _check_layout(page, report: PageReport, notebook: bool, quiet: bool = False) -> None:
    """Over-wide content, missing or over-wide figures and, on a notebook page, code cells
    without outputs (``quiet``: add problems only, as when re-checked after a tab switch)."""
    got = page.evaluate(LAYOUT, [NO_OUTPUT_MARKER, notebook])
    before = len(report.problems)
    if got is None:
        _add(report, "no content column (article.md-content__inner) on the page")
        return
    width = got["width"]
    for line in got["wide"][:MAX_WIDE]:
        _add(report, f"wider than the {width}px column: {line}")
    if len(got["wide"]) > MAX_WIDE:
        _add(report, f"wider than the {width}px column: {len(got['wide']) - MAX_WIDE} more "
                     "element(s)")  # fmt: skip
    for img in got["images"]:
        if not img["loaded"]:
            _add(report, f"figure missing (did not load): {img['src']}")
        elif img["width"] > width + 1:
            _add(report, f"figure wider than the {width}px column ({img['width']}px): "
                         f"{img['src']}")  # fmt: skip
    cells = got["cells"]
    if notebook and not got["notebook"]:
        _add(report, "notebook page without a rendered notebook (.jp-Notebook)")
    for c in cells or []:
        if not c["outputs"] and not c["marked"]:
            _add(report, f"notebook code cell {c['n']} ({c['first']!r}) has no output: execute "
                         "the notebook (alexnet-course site notebooks) or mark the cell "
                         f"{NO_OUTPUT_MARKER!r}")  # fmt: skip
    if not quiet:
        found = len(report.problems) - before
        text = f"layout fits {width}px" if not found else f"{found} layout problem(s)"
        text += f", {sum(i['loaded'] for i in got['images'])} figure(s) loaded"
        if cells is not None:
            text += f", {sum(bool(c['outputs']) for c in cells)}/{len(cells)} code cells with output"
        report.checks.append(text)


# The figures shown now (tabs as they are): their address, natural and displayed widths
SHOWN_FIGURES = """() => [...document.querySelectorAll('article img')]
    .filter(i => i.getClientRects().length && i.getBoundingClientRect().width > 0)
    .map(i => [i.currentSrc, i.naturalWidth, i.getBoundingClientRect().width])"""
MIN_TEXT_PX = 10  # the smallest text of a figure, at the width the page shows it
MAX_RESULTS_PX = 15000  # the results page's height, one run's tab open


def _check_figure_text(page, report: PageReport, site: Path) -> None:
    """Every figure that records its smallest text (alexnet_course.compare.report) shows it
    at least MIN_TEXT_PX tall at its displayed width, in every tab of the page's first tab
    set; a comparison figure under results/ that records none is a problem too."""
    from PIL import Image

    from alexnet_course.compare.report import MIN_TEXT_KEY

    seen: dict[str, tuple[int, float]] = {}

    def collect() -> None:
        for src, natural, shown in page.evaluate(SHOWN_FIGURES):
            seen.setdefault(src, (natural, shown))

    collect()
    labels = page.locator(".tabbed-set").first.locator(":scope > .tabbed-labels > label")
    for i in range(labels.count() if page.locator(".tabbed-set").count() else 0):
        labels.nth(i).click()
        collect()
    checked = 0
    for src, (natural, shown) in sorted(seen.items()):
        rel = urlparse(src).path.lstrip("/")
        path = site / rel
        if path.suffix.lower() != ".png" or not path.is_file():
            continue
        with Image.open(path) as im:
            recorded = im.text.get(MIN_TEXT_KEY)
        if recorded is None:
            if rel.startswith("results/"):
                _add(report, f"figure {rel} records no text size (draw it with "
                             "alexnet_course.compare.report, or `alexnet-course report`)")  # fmt: skip
            continue
        px = float(recorded) * shown / max(natural, 1)
        checked += 1
        if px < MIN_TEXT_PX:
            _add(report, f"figure {rel}: its smallest text is {px:.1f}px at the {shown:.0f}px it "
                         f"is shown (drawn {natural}px wide); at least {MIN_TEXT_PX}px")  # fmt: skip
    if checked:
        report.checks.append(f"{checked} figure(s) with text of at least {MIN_TEXT_PX}px as shown")


def _check_height(page, report: PageReport, limit: int) -> None:
    height = page.evaluate("() => document.documentElement.scrollHeight")
    if height > limit:
        _add(report, f"the page is {height}px tall, over {limit}px: put runs in tabs or collapse them")
    else:
        report.checks.append(f"{height}px tall (at most {limit}px)")


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


def check_site(site: Path, executable: str | None = None, pages: list[str] | None = None,
               shots: Path | None = None) -> list[PageReport]:  # fmt: skip
    """Open every main page of a built site (or ``pages``) in headless Chromium; returns one
    report per page (``problems`` empty when the page is fine). With ``shots``, also a
    full-page PNG of each page as it first appears, into that folder."""
    reports = []
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
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
            if shots is not None:
                page.screenshot(path=str(shot_path(shots, path)), full_page=True)
            notebook = path in NOTEBOOK_PAGES
            _check_math(page, report)
            _check_layout(page, report, notebook)
            _check_tabs(page, report, notebook)
            if path == "results/":
                _check_results(page, report)
                _check_height(page, report, MAX_RESULTS_PX)
            _check_figure_text(page, report, site)
            page.close()
            reports.append(report)
        if pages == everything:
            reports.append(_check_tabs_across_pages(b, base, "lessons/02_torch_pretrained/",
                                                    "lessons/04_keras_scratch/", "Keras"))  # fmt: skip
    return reports


def shot_path(out: Path, path: str) -> Path:
    """Where the screenshot of the page at ``path`` goes."""
    return out / ((path.strip("/").replace("/", "_") or "home") + ".png")


def screenshots(site: Path, out: Path, executable: str | None = None,
                pages: list[str] | None = None) -> list[Path]:  # fmt: skip
    """Full-page PNGs of every page of a built site (or ``pages``), into ``out`` (taken while
    the site is checked, as :func:`check_site` opens each page)."""
    pages = SCREENSHOT_PAGES if pages is None else pages
    check_site(site, executable, pages, shots=out)
    return [shot_path(out, p) for p in pages if shot_path(out, p).is_file()]


def main(args) -> int:
    """``alexnet-course site check|screenshots|notebooks``."""
    import tempfile

    if args.site_command == "notebooks":
        for p in execute_notebooks():
            print(f"executed {p}")
        return 0
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
