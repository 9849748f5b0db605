"""The house: docs/architecture.md lists every module, no module imports itself back, none is
longer than 600 lines, and nothing is added to the argparse namespace after parsing."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "alexnet_course"
MAX_LINES = 600


def _modules() -> dict[str, object]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path, modules: dict) -> set[str]:
    """The library modules ``name`` imports, at the top or inside a function: ``from pkg
    import sub`` imports the submodule, ``from pkg import name`` the package."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                base = f"{up}.{base}" if base else up
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            found |= set(subs) if subs and len(subs) == len(node.names) else {base, *subs}
    return {m for m in found if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_module_imports_itself_back():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert not _cycles(graph), "import cycles: " + "; ".join(" -> ".join(c) for c in _cycles(graph))


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_module_over_600_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_architecture_page_lists_every_module_and_only_those():
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `(alexnet_course[\w.]*)` \|", text, re.M))
    modules = set(_modules())
    assert listed == modules, {"missing from the page": sorted(modules - listed),
                               "not a module": sorted(listed - modules)}  # fmt: skip


@pytest.mark.own_process  # a comparison in-process (#30)
def test_nothing_is_added_to_the_parsed_arguments(tmp_path, monkeypatch):
    """``compare`` on the smoke profile with a namespace that refuses new attributes after
    parsing: the run keeps its state in its own context."""
    import argparse

    from alexnet_course import cli

    class Frozen(argparse.Namespace):
        def __setattr__(self, key, value):
            if getattr(self, "_sealed", False):
                raise AssertionError(f"args.{key} set after parsing")
            super().__setattr__(key, value)

    real = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        ns = real(self, args, Frozen())
        object.__setattr__(ns, "_sealed", True)
        return ns

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    out = tmp_path / "run"
    assert cli.main(["compare", "--profile", "smoke", "--arms", "torch-scratch", "--epochs", "1",
                     "--out", str(out), "--no-download"]) == 0  # fmt: skip
    assert (out / "torch-scratch" / "results.json").is_file()


def test_compare_imports_no_grading_module():
    """compare stops importing grading: the comparison's modules import no grading module."""
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    seen, todo = set(), ["alexnet_course.compare.runner"]
    while todo:
        m = todo.pop()
        for n in graph[m]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert not [m for m in seen if m.startswith("alexnet_course.grading")], sorted(seen)


def test_collecting_the_suite_imports_no_tensorflow():
    """TensorFlow stays out of the pytest workers (#30): a test module that imported it at
    collection put 0.6 GB into every worker, and the tests run in them afterwards measured
    up to 2.9 GB. Tests that need it import it inside the test, in a process of their own."""
    import subprocess
    import sys

    code = ("import sys, pytest\n"
            "rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', '-p', "
            "'no:xdist', 'tests'])\n"
            "print('TENSORFLOW', 'tensorflow' in sys.modules, 'keras' in sys.modules, rc)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert "TENSORFLOW False False 0" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
