"""What a worker may see of a graded test file: its observe halves, never its references.

A graded test file holds both halves of every test (:mod:`.remote`). The test process
reads all of it; the worker, where learner code runs, gets a **view** (:func:`worker_view`)
written by the grader: the file's imports, every function passed as the first argument of
``observe(...)``/``observed(...)`` or named ``_observe*``, and the module-level names those
use, transitively. A reference function (``reference_alexnet``), a check helper or a test
function is in the view only if an observe half uses it, and a test in the project's suite
checks that none does. So learner code that imports the test module in the worker finds no
answer there.
"""

from __future__ import annotations

import ast
import threading

OBSERVERS = ("observe", "observed")


# CPython before 3.11.8 and 3.12.2 keeps ast.parse's recursion depth in interpreter-wide
# state (gh-106905): two grading threads parsing at once, with a thread switch inside (a
# finaliser run by the garbage collector), fail one with "SystemError: AST constructor
# recursion depth mismatch", and that submission's lesson got no grade (CI of f029038).
_PARSE_LOCK = threading.Lock()


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    names: set[str] = set()
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.add(n.id)
    return names


def _used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def observe_roots(tree: ast.Module) -> set[str]:
    """The observe halves of a test file: functions named ``_observe*`` and every name
    passed first to ``observe``/``observed`` (directly or as ``module.observe``)."""
    roots = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and n.name.startswith("_observe")}  # fmt: skip
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Name):
            f = n.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in OBSERVERS:
                roots.add(n.args[0].id)
    return roots


def worker_view(source: str, filename: str = "<test>") -> tuple[str, set[str]]:
    """The worker's view of a test file's ``source`` and the top-level names it keeps."""
    with _PARSE_LOCK:
        tree = ast.parse(source, filename)
    defs: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        for name in _defined(node):
            defs.setdefault(name, []).append(node)
    keep_names: set[str] = set()
    todo = [r for r in observe_roots(tree) if r in defs]
    while todo:
        name = todo.pop()
        if name in keep_names:
            continue
        keep_names.add(name)
        for node in defs.get(name, []):
            todo += [u for u in _used(node) if u in defs and u not in keep_names]
    body = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            body.append(node)
        elif _defined(node) & keep_names:
            body.append(node)
    module = ast.Module(body=body, type_ignores=[])
    header = (f'"""The worker\'s view of {filename}: its observe halves and what they use '
              '(written by the grader)."""\n')  # fmt: skip
    return header + ast.unparse(module) + "\n", keep_names
