"""Every lesson's graded suite: passes on the solution, fails on the stubs ("not started"),
and catches each typical wrong implementation in tests/mutants.py."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alexnet_course.grading.load import BUSY_ENV
from alexnet_course.grading.plugin import read_outcomes
from tests.alternatives import ALTERNATIVES
from tests.conftest import ROOT, copy_lesson, run_pytest
from tests.mutants import CAUGHT_BY, MUTANTS, TARGET
from tests.order_first import ENV

LESSONS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())


@pytest.mark.parametrize("lesson", LESSONS)
def test_graded_suite_passes_on_the_solution(lesson, tmp_path):
    t0 = time.perf_counter()
    # the warm server imported the library before pytest could rewrite its asserts: a warning
    # only this harness causes (a learner's fresh pytest never shows it)
    rc, res, out = run_pytest(ROOT / "lessons" / lesson, "--solutions", "-W",
                              "ignore::pytest.PytestAssertRewriteWarning", results=tmp_path / "r.json",
                              warm=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    assert rc == 0, out[-3000:]
    failed = [t["name"] for t in res["tests"] if t.get("status") == "failed"]
    assert not failed and res["score"] == res["extra_data"]["max_score"] > 0, out[-3000:]
    assert f"{lesson}: {res['score']:g}/{res['extra_data']['max_score']:g}" in out
    assert "warnings summary" not in out, out[-3000:]  # a green run is quiet (#29)
    print(f"{lesson} --solutions: {len(res['tests'])} graded tests in {seconds:.1f} s")


@pytest.mark.parametrize("lesson", LESSONS)
def test_graded_suite_fails_every_test_on_the_stubs(lesson, tmp_path):
    rc, res, out = run_pytest(ROOT / "lessons" / lesson, results=tmp_path / "r.json", warm=True)
    assert rc == 1, out[-2000:]
    graded = [t for t in res["tests"] if "status" in t]  # a GPU test not run here has none
    passing = [t["name"] for t in graded if t["status"] != "failed"]
    assert graded and not passing, passing
    assert res["score"] == 0
    assert all("not started" in t["tags"] for t in graded), [
        t["name"] for t in graded if "not started" not in t["tags"]]
    assert "NOT STARTED" in out and f"{lesson}: 0/" in out


def _apply(lesson, mutant, dest):
    name, file, old, new = mutant[:4]
    folder = copy_lesson(lesson, dest / name)
    path = folder / file
    text = path.read_text()
    assert text.count(old) == 1, f"mutant {name}: {old!r} found {text.count(old)} times"
    path.write_text(text.replace(old, new))
    return folder


@pytest.mark.parametrize("lesson", sorted(MUTANTS))
def test_mutants_apply_to_the_solution(lesson, tmp_path):
    assert len(MUTANTS[lesson]) >= 10
    for m in MUTANTS[lesson]:
        _apply(lesson, m, tmp_path)


def _survivors(lesson: str, mutants: list, tmp_path: Path) -> list[tuple[str, str]]:
    """The mutants the lesson's graded suite accepts (with the end of their output)."""

    def run(mutant):
        folder = _apply(lesson, mutant, tmp_path)
        target = folder / (mutant[4] if len(mutant) > 4 else TARGET[mutant[1]])
        outcomes = tmp_path / f"{mutant[0]}.outcomes.json"
        # the whole graded suite judges the mutant; the test known to catch it runs first,
        # so that -x stops there (tests/order_first.py)
        rc, res, out = run_pytest(target, "-x", "--benchmark-disable", "-p", "tests.order_first",
                                  "--outcomes-json", str(outcomes),
                                  results=tmp_path / f"{mutant[0]}.json",
                                  env={"OMP_NUM_THREADS": "1",  # two at a time on 2 cores
                                       ENV: CAUGHT_BY.get(f"{lesson}/{mutant[0]}", ""),
                                       # judged as the class grader judges: a busy machine
                                       # excuses nothing (a slow mutant must fail)
                                       BUSY_ENV: "decide"},
                                  warm=True)  # fmt: skip
        failed = [t["name"] for t in res.get("tests", []) if t.get("status") == "failed"]
        rows = read_outcomes(outcomes)
        first = next((r["nodeid"].split("::")[-1] for r in rows if r["status"] == "failed"), None)
        return mutant[0], rc, failed, out, first

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(run, mutants))
    if record := os.environ.get("RECORD_CAUGHT_BY"):  # refresh tests/mutants.py's CAUGHT_BY
        path = Path(record)
        known = json.loads(path.read_text()) if path.exists() else {}
        known.update({f"{lesson}/{name}": first for name, _, _, _, first in outcomes if first})
        path.write_text(json.dumps(known, indent=1, sort_keys=True))
    return [(name, out[-1500:]) for name, rc, failed, out, _ in outcomes if rc == 0 or not failed]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", sorted(MUTANTS))
def test_every_typical_mistake_is_caught(lesson, tmp_path):
    survivors = _survivors(lesson, MUTANTS[lesson], tmp_path)
    assert not survivors, "mutants the graded suite accepted:\n" + "\n\n".join(
        f"{n}:\n{o}" for n, o in survivors)


def test_the_mutant_check_sees_a_survivor(tmp_path):
    """The check above can fail: a change that keeps the solution correct survives, and a
    mutant whose recorded first test no longer catches it is still judged by the rest."""
    harmless = ("harmless", "analysis.py", "import numpy as np", "import numpy as np  # same")
    stale = ("stale_hint", "analysis.py", *MUTANTS["05_analysis"][0][2:4])
    CAUGHT_BY["05_analysis/stale_hint"] = "test_learning_curves_plot"  # passes on this mutant
    try:
        survivors = _survivors("05_analysis", [harmless, stale], tmp_path)
    finally:
        del CAUGHT_BY["05_analysis/stale_hint"]
    assert [name for name, _ in survivors] == ["harmless"], survivors


@pytest.mark.slow
@pytest.mark.parametrize("lesson", sorted(ALTERNATIVES))
def test_correct_alternatives_get_full_marks(lesson, tmp_path):
    """Correct code in styles the reference does not use passes every graded test: a test
    requires only what its page states (layer types and order, not names; behaviour, not
    modules; every signature the stub's types allow)."""
    failures = []
    for name, file, edits, test_file in ALTERNATIVES[lesson]:
        folder = copy_lesson(lesson, tmp_path / name)
        text = (folder / file).read_text()
        for old, new in edits:
            assert text.count(old) == 1, f"alternative {name}: {old!r} found {text.count(old)} times"
            text = text.replace(old, new)
        (folder / file).write_text(text)
        rc, res, out = run_pytest(folder / test_file, "--benchmark-disable",
                                  results=tmp_path / f"{name}.json", warm=True)  # fmt: skip
        failed = [t["name"] for t in res.get("tests", []) if t.get("status") == "failed"]
        if rc != 0 or failed:
            failures.append((name, failed, out[-1500:]))
    assert not failures, failures


@pytest.mark.parametrize("lesson, file, old, new, test_file, must_say", [
    # 1.2: Bessel's correction is a convention the page states; the failure names it
    ("01_data", "data.py", "return x.mean(axis=0), x.std(axis=0)",
     "return x.mean(axis=0), x.std(axis=0, ddof=1)", "test_data.py",
     ["ddof=0", "population", "docs/lessons/01_data.md#task-1-2"]),
    # 1.6: a split whose training indices keep the validation ones is named as such (the
    # hint once said to read all five batch files)
    ("01_data", "data.py", "train_idx = np.setdiff1d(np.arange(n), val_idx)", "train_idx = np.arange(n)",
     "test_data.py", ["never both", "docs/lessons/01_data.md#task-1-6"]),
    # 2.4: the page's trap (`in` on tensors compares values) is named, not a raw RuntimeError
    ("02_torch_pretrained", "pretrained.py", "p.requires_grad and id(p) not in head_ids",
     "p.requires_grad and p not in head", "test_pretrained.py",
     ["compares VALUES elementwise", "identity", "docs/lessons/02_torch_pretrained.md#task-2-4"]),
    # 2.5: len(loader.dataset) on the test's list of batches: named, and no model printed
    ("02_torch_pretrained", "pretrained.py", "losses.append(total / max(seen, 1))",
     "losses.append(total / len(loader.dataset))", "test_pretrained.py",
     ["any iterable of (images, labels) batches", "docs/lessons/02_torch_pretrained.md#task-2-5"]),
    # 3.9: rows and columns swapped are named as such (the hint once said "count every sample")
    ("03_torch_scratch", "train.py", "pairs = labels.cpu() * num_classes + logits.argmax(1).cpu()",
     "pairs = logits.argmax(1).cpu() * num_classes + labels.cpu()", "test_train.py",
     ["rows and columns are swapped", "docs/lessons/03_torch_scratch.md#task-3-9"]),
    # 3.10: the best weights kept as the live state_dict: the hint says to keep a copy
    ("03_torch_scratch", "train.py",
     "best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}",
     "best_state = model.state_dict()", "test_train.py",
     ["COPY of the best weights", "docs/lessons/03_torch_scratch.md#task-3-10"]),
    # 3.10: a numpy number in the checkpoint: torch's cause, and plain Python numbers named
    ("03_torch_scratch", "train.py", '{"epoch": epoch, "val_accuracy": result.accuracy,',
     '{"epoch": epoch, "val_accuracy": np.float64(result.accuracy),', "test_train.py",
     ["Unsupported global", "plain Python numbers", "docs/lessons/03_torch_scratch.md#task-3-10"]),
    # 3.1's LRN with the paper's alpha put where torch's formula divides it: 3.6 says the
    # features differ (it once blamed the flatten order)
    ("03_torch_scratch", "alexnet.py", "nn.LocalResponseNorm(size=5, alpha=5 * 1e-4,",
     "nn.LocalResponseNorm(size=5, alpha=1e-4,", "test_model.py",
     ["the features differ before the classifier", "docs/lessons/03_torch_scratch.md#task-3-6"]),
    # a missing ValueError teaches like every other check (no raw "DID NOT RAISE")
    ("03_torch_scratch", "alexnet.py",
     '    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")',
     "    return nn.Identity()", "test_model.py",
     ["expected: raises ValueError", "docs/lessons/03_torch_scratch.md#task-3-1"]),
])  # fmt: skip
def test_failures_name_the_convention_and_the_docs(lesson, file, old, new, test_file, must_say,
                                                    tmp_path):  # fmt: skip
    folder = copy_lesson(lesson, tmp_path / "l")
    text = (folder / file).read_text()
    assert text.count(old) == 1
    (folder / file).write_text(text.replace(old, new))
    rc, res, out = run_pytest(folder / test_file, "--benchmark-disable", results=tmp_path / "r.json",
                              warm=True)  # fmt: skip
    assert rc == 1
    outputs = "\n".join(t.get("output", "") for t in res["tests"] if t.get("status") == "failed")
    missing = [m for m in must_say if m not in outputs]
    assert not missing and "DID NOT RAISE" not in outputs, (missing, outputs[-2000:])
    assert "(features): Sequential(" not in outputs  # no model's repr in a learner's failure
