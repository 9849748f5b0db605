"""Mutation testing of ``solutions/`` (issue #32): ``alexnet-course mutants [LESSON ...]``.

For each lesson, mutmut's (2.x) mutation operators make every mutant of the lesson's solution
files, one at a time, and the lesson's graded suite runs against it
(``pytest lessons/NN --solutions -x -q -n 0 -p no:cacheprovider --busy-machine decide``, one
test process, one thread; ``--jobs N`` tests N mutants at once, each in a scratch copy of its
own). A mutant the suite fails (or that runs past the time limit) is
*killed*; one it passes *survived*. A surviving mutant is *equivalent* where
``docs/results/mutants/justifications.json`` justifies it in one line; every other survivor is a
*gap* the graded tests should close (that file's ``"verdict": "gap"`` entries add a note on
what would kill it). A ``"verdict": "gpu"`` entry names the ``gpu``-marked test that kills a
survivor on a GPU: it is listed apart and still counts as not killed.

Nothing in the checkout is mutated: the run works in a scratch copy of the committed tree
(``git archive`` of the commit, in a temporary folder), so the report is of that commit's
solutions and tests, and concurrent work in the checkout is untouched. The scratch copy's
``alexnet_course`` is the one the suite imports (``python -m pytest`` from its root).

The report (``docs/results/mutants/NN_name/report.json`` and ``report.md``, which the site
leaves out: they quote solution lines) records the counts, every mutant, the command, date,
hardware, versions, the commit and the sha256 of the lesson's solution files and graded test
files; ``tests/test_mutants_report.py`` fails when those
hashes no longer match the checkout (a stale report). A lesson without a report is listed in
``not-measured.json`` with the reason (``--estimate`` writes one: the baseline suite time
and the number of mutants, so the hours a run would take).

mutmut is imported only to make mutants (``pip install -e .[dev]``); the hashes and report
checks need nothing beyond the standard library.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import itertools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_DIR = Path("docs") / "results" / "mutants"
EQUIVALENT_FILE = "justifications.json"
NOT_MEASURED_FILE = "not-measured.json"
PYTEST_ARGS = ["--solutions", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
               "--busy-machine", "decide"]  # fmt: skip
DETECTED = ("killed", "timeout")
ESTIMATE_CAP_S = 900  # --estimate-cap's default
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")  # fmt: skip


def refresh_command(lesson: str) -> str:
    return f"make mutants LESSON={lesson}"


# --- the files a report is made on, and their hashes (no mutmut needed) ---------------------


def lesson_files(root: Path, lesson: str) -> dict[str, list[str]]:
    """The lesson's solution files and graded test files (with a conftest.py of the lesson
    folder, where there is one), as paths relative to ``root``."""
    sol = sorted((root / "solutions" / lesson).glob("*.py"))
    tests = sorted((root / "lessons" / lesson).glob("test_*.py"))
    tests += [p for p in [root / "lessons" / lesson / "conftest.py"] if p.is_file()]
    return {"solutions": [p.relative_to(root).as_posix() for p in sol],
            "tests": [p.relative_to(root).as_posix() for p in tests]}  # fmt: skip


def file_hashes(root: Path, lesson: str) -> dict[str, dict[str, str]]:
    """``{"solutions": {path: sha256}, "tests": {path: sha256}}`` of the files under ``root``."""
    return {kind: {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths}
            for kind, paths in lesson_files(root, lesson).items()}  # fmt: skip


def stale_files(report: dict, root: Path) -> list[str]:
    """The files whose hash differs from the report's, or that one side lacks."""
    now, then = file_hashes(root, report["lesson"]), report["files"]
    out = []
    for kind in ("solutions", "tests"):
        a, b = then.get(kind, {}), now[kind]
        out += sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))
    return out


def report_path(root: Path, lesson: str, suffix: str = ".json") -> Path:
    """``docs/results/mutants/NN_name/report.json`` (or ``.md``): named so that mkdocs leaves
    them out of the site (``results/**/report.md``, ``results/**/*.json``), as they quote
    solution lines."""
    return root / REPORT_DIR / lesson / f"report{suffix}"


def load_json(path: Path, default):
    return json.loads(path.read_text()) if path.is_file() else default


# --- mutants -------------------------------------------------------------------------------


@dataclass
class Mutant:
    file: str
    line: int  # 1-based, of the first changed line
    original: str  # the changed lines, stripped, joined by " / "
    mutated: str
    index: int = 0  # mutmut's index of the mutation on its line
    status: str = "untested"  # killed | timeout | survived | equivalent | gpu
    seconds: float = 0.0
    killed_by: str = ""
    reason: str = ""  # an equivalent one's justification, or a gap's note

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.original, self.mutated)


def make_mutants(root: Path, rel: str) -> list[tuple[Mutant, str]]:
    """Every mutant mutmut makes of ``root/rel``: (its identity, the mutated source)."""
    from mutmut import Context, RelativeMutationID, list_mutations, mutate

    source = (root / rel).read_text()
    ids = list_mutations(Context(source=source, filename=rel))
    out = []
    for mid in ids:
        ctx = Context(source=source, filename=rel,
                      mutation_id=RelativeMutationID(mid.line, mid.index, mid.line_number))  # fmt: skip
        mutated, n = mutate(ctx)
        if n != 1:
            raise RuntimeError(f"{rel}:{mid.line_number + 1}: mutmut applied {n} mutations")
        line, old, new = _changed(source, mutated)
        out.append((Mutant(rel, line, old, new, mid.index), mutated))
    return out


def _changed(a: str, b: str) -> tuple[int, str, str]:
    la, lb = a.split("\n"), b.split("\n")
    sm = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    ops = [op for op in sm.get_opcodes() if op[0] != "equal"]
    i1, i2, j1, j2 = ops[0][1], ops[-1][2], ops[0][3], ops[-1][4]
    return (i1 + 1, " / ".join(s.strip() for s in la[i1:i2]),
            " / ".join(s.strip() for s in lb[j1:j2]))  # fmt: skip


def justify(mutants: list[Mutant], entries: list[dict]) -> list[dict]:
    """Give each surviving mutant its entry of ``justifications.json`` (matched by file, original
    and mutated text; the nearest line where one text occurs more than once): ``verdict``
    "equivalent" makes it equivalent, "gpu" marks it for the GPU tests, "gap" only adds the
    note. Returns the entries that
    matched no survivor (the suite kills them now, or the code changed)."""
    unused, taken = [], set()
    for e in sorted(entries, key=lambda e: e.get("line", 0)):
        key = (e["file"], e["original"], e["mutated"])
        cands = [m for m in mutants
                 if m.status == "survived" and m.key == key and id(m) not in taken]  # fmt: skip
        if not cands:
            unused.append(e)
            continue
        m = min(cands, key=lambda m: abs(e.get("line", m.line) - m.line))
        taken.add(id(m))
        m.reason = e["reason"]
        verdict = e.get("verdict", "equivalent")
        if verdict in ("equivalent", "gpu"):
            m.status = verdict
    return unused


def counts(mutants: list[Mutant]) -> dict:
    c = {s: sum(m.status == s for m in mutants)
         for s in ("killed", "timeout", "survived", "equivalent", "gpu")}  # fmt: skip
    c["total"] = len(mutants)
    judged = c["total"] - c["equivalent"]
    c["kill_rate"] = round((c["killed"] + c["timeout"]) / judged, 4) if judged else None
    return c


# --- running the suite ----------------------------------------------------------------------


def scratch_copy(root: Path, commit: str) -> Path:
    """The committed tree at ``commit`` in a new temporary folder (``git archive``)."""
    dest = Path(tempfile.mkdtemp(prefix="alexnet-mutants-"))
    data = subprocess.run(["git", "archive", "--format=tar", commit], cwd=root, check=True,
                          capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def suite_env(scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ALEXNET_COURSE_ROOT", "PYTEST_ADDOPTS", "PYTHONPATH")}  # fmt: skip
    env.update({k: "1" for k in THREAD_ENV})
    # no bytecode: a mutant of the same size written in the same second must not run as the
    # cached original
    env.update(PYTHONDONTWRITEBYTECODE="1", XDG_CACHE_HOME=str(scratch / ".cache"),
               TF_CPP_MIN_LOG_LEVEL="3", MALLOC_ARENA_MAX="2")  # fmt: skip
    return env


def suite_command(lesson: str) -> list[str]:
    return [sys.executable, "-m", "pytest", f"lessons/{lesson}", *PYTEST_ARGS]


@dataclass
class Run:
    rc: int | None  # None: killed at the time limit
    seconds: float
    output: str = ""


def run_suite(scratch: Path, lesson: str, timeout: float) -> Run:
    t0 = time.monotonic()
    proc = subprocess.Popen(suite_command(lesson), cwd=scratch, env=suite_env(scratch),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
        return Run(proc.returncode, time.monotonic() - t0, out)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Run(None, time.monotonic() - t0, out or "")


FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def killed_by(output: str) -> str:
    m = FAILED.search(output)
    return m.group(1).split("/")[-1] if m else ""


# --- provenance -----------------------------------------------------------------------------


def hardware() -> str:
    from alexnet_course.provenance import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} CPUs ({platform.system()} {platform.release()})"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("mutmut", "pytest", "hypothesis", "numpy", "matplotlib", "torch",
                 "torchvision", "tensorflow", "keras"):  # fmt: skip
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


# --- one lesson -----------------------------------------------------------------------------


@dataclass
class Options:
    root: Path
    commit: str
    timeout_factor: float = 5.0
    max_mutants: int | None = None  # a trial run (its report says so, and it is not written)
    log: object = field(default=print)
    jobs: int = 1  # mutants tested at once, each in a scratch copy of its own, one thread each


def measure(lesson: str, opts: Options) -> dict:
    """Run every mutant of ``lesson`` and return its report (a dict, as written to JSON)."""
    scratches = [scratch_copy(opts.root, opts.commit) for _ in range(max(1, opts.jobs))]
    try:
        return _measure(lesson, opts, scratches)
    finally:
        for scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)


def _measure(lesson: str, opts: Options, scratches: list[Path]) -> dict:
    log, scratch = opts.log, scratches[0]
    files = lesson_files(scratch, lesson)
    if not files["solutions"] or not files["tests"]:
        raise SystemExit(f"{lesson}: no solution files or no graded tests at {opts.commit[:10]}")
    start, load0, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_average(), time.monotonic()
    base = run_suite(scratch, lesson, timeout=3600)
    if base.rc != 0:
        raise SystemExit(f"{lesson}: the graded suite fails on the unmutated solutions "
                         f"(rc {base.rc}):\n{base.output[-3000:]}")  # fmt: skip
    limit = max(60.0, opts.timeout_factor * base.seconds)
    mutants = []
    for rel in files["solutions"]:
        mutants += make_mutants(scratch, rel)
    trial = opts.max_mutants is not None and opts.max_mutants < len(mutants)
    todo = mutants[: opts.max_mutants] if trial else mutants
    log(f"{lesson}: baseline {base.seconds:.1f} s; {len(mutants)} mutants"
        f"{f' (trying {len(todo)})' if trial else ''}; limit {limit:.0f} s each; "
        f"{len(scratches)} at a time")  # fmt: skip
    originals = {rel: (scratch / rel).read_text() for rel in files["solutions"]}
    finished = itertools.count(1)  # next() is atomic: the jobs' threads share it

    def test_one(where: Path, m: Mutant, src: str) -> None:
        path = where / m.file
        path.write_text(src)
        try:
            r = run_suite(where, lesson, timeout=limit)
        finally:
            path.write_text(originals[m.file])
        m.seconds = round(r.seconds, 2)
        m.status = "timeout" if r.rc is None else "survived" if r.rc == 0 else "killed"
        m.killed_by = killed_by(r.output) if m.status == "killed" else ""
        log(f"  [{next(finished)}/{len(todo)}] {m.status:8} {m.file}:{m.line}  {m.original!r} -> "
            f"{m.mutated!r}  ({r.seconds:.1f} s)")  # fmt: skip

    run_each(todo, scratches, test_one)
    tested = [m for m, _ in todo]
    entries = load_json(opts.root / REPORT_DIR / EQUIVALENT_FILE, {}).get(lesson, [])
    unused = justify(tested, entries)
    return {
        "lesson": lesson,
        "trial": trial,
        "commit": opts.commit,
        "command": f"{refresh_command(lesson)}  (alexnet-course mutants {lesson})",
        "suite_command": " ".join(["python", *suite_command(lesson)[1:]]),
        "mutation_engine": "mutmut's mutation operators (mutmut.list_mutations / mutmut.mutate),"
                           " one mutant at a time in a scratch copy of the commit",
        "date": start,
        "wall_s": round(time.monotonic() - t0, 1),
        "baseline_s": round(base.seconds, 2),
        "time_limit_s": round(limit, 1),
        "jobs": len(scratches),
        "load_average_at_start": load0,
        "load_average_at_end": load_average(),
        "hardware": hardware(),
        "versions": versions(),
        "files": file_hashes(scratch, lesson),
        "counts": counts(tested),
        "unmatched_justifications": unused,
        "mutants": [asdict(m) for m in tested],
    }


def run_each(todo: list[tuple[Mutant, str]], scratches: list[Path], test_one) -> None:
    """``test_one(scratch, mutant, source)`` for every mutant, as many at once as there are
    scratch copies; each copy holds one mutant at a time (a worker thread owns it and waits
    on its suite's process)."""
    import queue
    import threading

    work: queue.SimpleQueue = queue.SimpleQueue()
    for item in todo:
        work.put(item)
    errors: list[BaseException] = []

    def worker(where: Path) -> None:
        while not errors:
            try:
                m, src = work.get_nowait()
            except queue.Empty:
                return
            try:
                test_one(where, m, src)
            except BaseException as e:  # noqa: BLE001 - the others stop, the run fails
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in scratches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# --- the reports ----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else "(nothing)"


def _table(last: str, ms: list[dict]) -> list[str]:
    """A markdown table of mutants: where, original, mutant, and ``last`` (their reason)."""
    return [f"| where | original | mutant | {last} |", "| --- | --- | --- | --- |"] + [
        f"| {m['file']}:{m['line']} | {_cell(m['original'])} | {_cell(m['mutated'])} | "
        f"{m['reason'] or 'not yet classified'} |" for m in ms]  # fmt: skip


def markdown(rep: dict) -> str:
    c = rep["counts"]
    rate = f"{100 * c['kill_rate']:.1f}%" if c["kill_rate"] is not None else "n/a"
    ms = rep["mutants"]
    gaps = [m for m in ms if m["status"] == "survived"]
    eqs = [m for m in ms if m["status"] == "equivalent"]
    gpu = [m for m in ms if m["status"] == "gpu"]
    lines = [
        f"# Mutation testing: {rep['lesson']}",
        "",
        f"**{c['killed'] + c['timeout']} of {c['total'] - c['equivalent']} non-equivalent "
        f"mutants killed ({rate})**: {c['total']} mutants, {c['killed']} killed by a failing "
        f"test, {c['timeout']} by the time limit, {c['equivalent']} equivalent (justified "
        f"below), {c['survived']} surviving (gaps in the tests)"
        + (f", {len(gpu)} surviving here that a GPU test kills (below)." if gpu else "."),
        "",
        "| | |",
        "| --- | --- |",
        f"| refresh with | `{refresh_command(rep['lesson'])}` |",
        f"| suite run per mutant | `{rep['suite_command']}` |",
        f"| mutants made by | {rep['mutation_engine']} |",
        f"| commit | `{rep['commit']}` |",
        f"| date | {rep['date']} |",
        f"| wall time | {rep['wall_s'] / 60:.1f} min (suite on the unmutated solutions: "
        f"{rep['baseline_s']:.1f} s; limit per mutant {rep['time_limit_s']:.0f} s; "
        f"{rep.get('jobs', 1)} mutant(s) at a time) |",
        f"| load average (1, 5, 15 min) | at start {rep['load_average_at_start']}, at end "
        f"{rep['load_average_at_end']} |",
        f"| hardware | {rep['hardware']} |",
        f"| versions | {', '.join(f'{k} {v}' for k, v in rep['versions'].items())} |",
    ]
    for kind in ("solutions", "tests"):
        for p, h in rep["files"][kind].items():
            lines.append(f"| sha256 of `{p}` | `{h}` |")
    if rep.get("trial"):
        lines += ["", "**A trial run: only the first mutants were tested.**"]
    lines += ["", f"## Surviving mutants: gaps in the graded tests ({len(gaps)})", ""]
    if gaps:
        lines += _table("note", gaps)
    else:
        lines.append("None.")
    if gpu:
        lines += ["", f"## Surviving here, killed by a GPU test this machine skips ({len(gpu)})",
                  "", "Counted as not killed.", ""]  # fmt: skip
        lines += _table("the GPU test, and why only it can tell", gpu)
    lines += ["", f"## Equivalent mutants ({len(eqs)})", ""]
    if eqs:
        lines += _table("why no test can tell", eqs)
    else:
        lines.append("None.")
    if rep["unmatched_justifications"]:
        lines += ["", "## Justifications that matched no surviving mutant", "",
                  "The suite kills these now, or the code changed: "
                  f"`{EQUIVALENT_FILE}` can drop them.", ""]  # fmt: skip
        lines += [f"- {e['file']}:{e.get('line', '?')} {_cell(e['original'])} -> "
                  f"{_cell(e['mutated'])}" for e in rep["unmatched_justifications"]]  # fmt: skip
    killed = [m for m in ms if m["status"] in DETECTED]
    lines += ["", f"## Killed ({len(killed)})", "",
              "Every killed mutant, with the test that failed first, is in "
              "`report.json`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(root: Path, rep: dict) -> tuple[Path, Path]:
    j, md = report_path(root, rep["lesson"]), report_path(root, rep["lesson"], ".md")
    j.parent.mkdir(parents=True, exist_ok=True)
    j.write_text(json.dumps(rep, indent=1) + "\n")
    md.write_text(markdown(rep))
    nm = root / REPORT_DIR / NOT_MEASURED_FILE
    pending = load_json(nm, {})
    if pending.pop(rep["lesson"], None) is not None:
        nm.write_text(json.dumps(pending, indent=1) + "\n")
    return j, md


def estimate(lesson: str, opts: Options, cap: float = ESTIMATE_CAP_S) -> dict:
    """The baseline suite time and the number of mutants: an upper bound of a run's hours
    (every mutant running the whole suite, as a surviving one does)."""
    scratch = scratch_copy(opts.root, opts.commit)
    try:
        base = run_suite(scratch, lesson, timeout=cap)
        n = sum(len(make_mutants(scratch, rel)) for rel in lesson_files(scratch, lesson)["solutions"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    hours = n * base.seconds / 3600
    if base.rc is None:
        took = f"did not finish in {cap:.0f} s"
    else:
        took = f"takes {base.seconds:.0f} s" + (f" and FAILS (rc {base.rc})" if base.rc else "")
    bound = "at least" if base.rc is None else "up to"
    return {"reason": f"not run: {bound} {hours:.1f} h on this machine ({n} mutants, each a "
                      f"run of the graded suite, which {took} on the unmutated solutions)",
            "mutants": n, "baseline_s": round(base.seconds, 1), "commit": opts.commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "hardware": hardware(),
            "load_average": load_average()}  # fmt: skip


# --- the command ----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lessons", nargs="*", metavar="LESSON",
                   help="lesson folders, e.g. 05_analysis (default: every lesson)")
    p.add_argument("--commit", default="HEAD",
                   help="the commit whose solutions and tests are measured (default HEAD; "
                        "uncommitted changes are never measured)")  # fmt: skip
    p.add_argument("--timeout-factor", type=float, default=5.0,
                   help="a mutant's time limit: this times the unmutated suite's time, at "
                        "least 60 s (default 5)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="test N mutants at once, each in a scratch copy of its own with one "
                        "thread (default 1; up to the number of cores)")  # fmt: skip
    p.add_argument("--max-mutants", type=int, default=None, metavar="N",
                   help="a trial: test only the first N mutants and print, write nothing")
    p.add_argument("--estimate", action="store_true",
                   help="only time the suite once and count the mutants; list the lesson in "
                        f"{NOT_MEASURED_FILE} with the hours a run would take")  # fmt: skip
    p.add_argument("--estimate-cap", type=float, default=ESTIMATE_CAP_S, metavar="S",
                   help="--estimate stops the suite run after S seconds; the hours are then a "
                        f"floor (default {ESTIMATE_CAP_S})")  # fmt: skip
    p.add_argument("--justify-only", action="store_true",
                   help=f"run nothing: apply {EQUIVALENT_FILE} again to the committed reports "
                        "and rewrite them")  # fmt: skip
    p.add_argument("--root", type=Path, default=None, help="the course checkout")


def rejustify(root: Path, lesson: str) -> dict:
    """The lesson's report with ``justifications.json`` applied again (no mutant is re-run)."""
    rep = json.loads(report_path(root, lesson).read_text())
    fields = Mutant.__dataclass_fields__
    ms = [Mutant(**{k: v for k, v in m.items() if k in fields}) for m in rep["mutants"]]
    for m in ms:
        if m.status in ("survived", "equivalent", "gpu"):
            m.status, m.reason = "survived", ""
    entries = load_json(root / REPORT_DIR / EQUIVALENT_FILE, {}).get(lesson, [])
    rep["unmatched_justifications"] = justify(ms, entries)
    rep["mutants"], rep["counts"] = [asdict(m) for m in ms], counts(ms)
    return rep


def main(args: argparse.Namespace) -> int:
    from alexnet_course.course import course_root, lesson_names

    root = (args.root or course_root()).resolve()
    commit = git(root, "rev-parse", args.commit)
    lessons = args.lessons or lesson_names(root, "solutions")
    unknown = [x for x in lessons if not (root / "solutions" / x).is_dir()]
    if unknown:
        raise SystemExit(f"no such lesson in solutions/: {', '.join(unknown)}")
    dirty = git(root, "status", "--porcelain", "--untracked-files=no", "--", "solutions", "lessons")
    if dirty:
        print(f"note: uncommitted changes are not measured; measuring {commit[:10]}:\n{dirty}")
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, not {args.jobs}")
    opts = Options(root, commit, args.timeout_factor, args.max_mutants, jobs=args.jobs)
    for lesson in lessons:
        if args.justify_only:
            if report_path(root, lesson).is_file():
                rep = rejustify(root, lesson)
                write_report(root, rep)
                print(f"{lesson}: {rep['counts']}")
            continue
        if args.estimate:
            est = estimate(lesson, opts, args.estimate_cap)
            nm = root / REPORT_DIR / NOT_MEASURED_FILE
            pending = load_json(nm, {})
            pending[lesson] = est
            nm.parent.mkdir(parents=True, exist_ok=True)
            nm.write_text(json.dumps(dict(sorted(pending.items())), indent=1) + "\n")
            print(f"{lesson}: {est['reason']}")
            continue
        rep = measure(lesson, opts)
        c = rep["counts"]
        print(f"{lesson}: {c['total']} mutants, {c['killed']} killed, {c['timeout']} timeout, "
              f"{c['survived']} survived, {c['equivalent']} equivalent, {c['gpu']} for the GPU "
              "tests; kill rate "
              f"{c['kill_rate']} ({rep['wall_s'] / 60:.1f} min)")  # fmt: skip
        if rep["trial"]:
            print("a trial (--max-mutants): nothing written")
            continue
        j, md = write_report(root, rep)
        print(f"wrote {j.relative_to(root)} and {md.relative_to(root)}")
    return 0
