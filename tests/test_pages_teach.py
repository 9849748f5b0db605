"""Pages teach, never dictate (#29): no lesson page, no learner file's docstring (the
solutions' docstrings become the stubs') and no failure hint of a graded test holds a piece
of the reference solution's code, except what the task's contract itself names (a
signature, a convention the tests hold you to, a formula). A page gives the idea, the
formula, the shapes and the trap; the lines are the learner's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from alexnet_course.authoring.stubs import BEGIN, END
from tests.conftest import ROOT

LESSONS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
BLOCKS = (ast.FunctionDef, ast.For, ast.If, ast.With, ast.While, ast.ClassDef, ast.Try)
MIN_CHARS = 12  # shorter pieces (`x.float()`) say nothing a page should not
# Pieces of the answer a page may name because the contract does, and why.
CONTRACT = {
    "01_data": {
        'align_corners=False': "the resize convention the tests compare with (task 1.4)",
        'antialias=False': "the same convention",
        'method="bilinear"': "the same convention, in TensorFlow's words (task 1.7)",
        'np.random.default_rng(seed)': "where the split's randomness comes from (task 1.6)",
        'normalize(x,mean,std)': "the signature of task 1.3",
        'resize(x,size)': "the signature of task 1.4",
    },
    "02_torch_pretrained": {
        'WEIGHTS.transforms()': "where task 2.3's numbers are read from",
        'model.classifier[6]': "the name of the layer the contract replaces",
        'model.parameters()': "task 2.4's trap: it holds the frozen parameters too",
        'set_mode(model,mode)': "the signature of task 2.2",
    },
    "03_torch_scratch": {
        'model.modules()': "the order in which the tests take your layers",
        'model.state_dict()': "the checkpoint's format (task 3.10)",
        'nn.BatchNorm2d(channels)': "what the 'batch' switch must return (task 3.1)",
        'norm_layer(norm,96)': "conv1's norm, your own function (task 3.2)",
        'on_epoch_end(epoch,history)': "the signature of fit's callback",
        'range(epochs)': "how the checkpoint's epoch is counted (task 3.10)",
        'nn.CrossEntropyLoss()': "the documented default loss_fn",
    },
    "04_keras_scratch": {
        'classifier_layers(num_classes,dropout)': "the signature of task 4.3",
        'conv_blocks(norm)': "the signature of task 4.2",
        'drop**(epoch//every)': "the schedule's formula, the contract of task 4.7",
        'initial_lr*drop**(epoch//every)': "the same formula",
        'every=drop_every': "which schedule fit_keras uses (task 4.7)",
        'from_logits=True': "Keras's name for the convention: the loss takes logits",
        'momentum=0.9': "the optimizer the contract fixes",
        'training=True': "Keras's name for training mode (task 4.6)",
        'training=False': "Keras's name for inference mode (task 4.8)",
    },
    "05_analysis": {
        'pretraining_gain(results)': "the signature of task 5.4",
    },
}


def _flat(text: str) -> str:
    return re.sub(r"[\s`\\]", "", text)


def answer_pieces(path: Path) -> set[str]:
    """Every call, keyword argument, subscript, operation and one-line statement between the
    solution fences of ``path``, without spaces, and each method call without its object."""
    src = path.read_text()
    inside, on = set(), False
    for i, line in enumerate(src.splitlines(), 1):
        if BEGIN.match(line) or END.match(line):
            on = bool(BEGIN.match(line))
        elif on:
            inside.add(i)
    pieces = set()
    for n in ast.walk(ast.parse(src)):
        if not isinstance(n, (ast.Call, ast.keyword, ast.stmt, ast.BinOp, ast.Subscript)):
            continue
        if getattr(n, "lineno", None) not in inside or isinstance(n, BLOCKS):
            continue
        seg = ast.get_source_segment(src, n)
        if not seg or "\n" in seg:
            continue
        pieces.add(_flat(seg))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            receiver = ast.get_source_segment(src, n.func.value) or ""
            pieces.add(_flat(n.func.attr + seg[seg.index("(", len(receiver)):]))
    return {p for p in pieces if len(p) >= MIN_CHARS}


def teaching_texts(lesson: str) -> dict[str, str]:
    """The page, the docstrings of the learner files (from the solutions) and the failure
    hints of the graded tests (``hint=`` arguments and upper-case string constants)."""
    texts = {f"docs/lessons/{lesson}.md": (ROOT / "docs" / "lessons" / f"{lesson}.md").read_text()}
    for f in sorted((ROOT / "solutions" / lesson).glob("*.py")):
        tree = ast.parse(f.read_text())
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)]
        texts[f"docstrings of {f.name}"] = "\n".join(ast.get_docstring(n) or "" for n in nodes)
    for t in sorted((ROOT / "lessons" / lesson).glob("test_*.py")):
        hints = []
        for n in ast.walk(ast.parse(t.read_text())):
            value = None
            if isinstance(n, ast.keyword) and n.arg == "hint":
                value = n.value
            elif isinstance(n, ast.Assign) and all(isinstance(x, ast.Name) and x.id.isupper()
                                                   for x in n.targets):  # fmt: skip
                value = n.value
            if value is not None:
                hints += [c.value for c in ast.walk(value)
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)]  # fmt: skip
        texts[f"hints of {t.name}"] = "".join(hints)
    return texts


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_page_docstring_or_hint_holds_the_answer(lesson):
    pieces = set().union(*(answer_pieces(f) for f in (ROOT / "solutions" / lesson).glob("*.py")))
    allowed = CONTRACT.get(lesson, {})
    leaks = {}
    for where, text in teaching_texts(lesson).items():
        flat = _flat(text)
        found = sorted(p for p in pieces if p in flat and not any(p in a for a in allowed))
        found = [p for p in found if not any(p != q and p in q for q in found)]
        if found:
            leaks[where] = found
    assert not leaks, f"pieces of the reference solution in what the learner reads: {leaks}"


# A step's recipe in order is the answer in words (task 2.5's page and 3.8's once gave it).
RECIPES = [r"zero(_grad| the gradients)\W+(\w+\W+){0,2}forward",
           r"forward\W+(\w+\W+){0,3}loss\W+(\w+\W+){0,2}backward\W+(\w+\W+){0,2}step"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_page_docstring_or_hint_dictates_the_steps_in_order(lesson):
    found = {where: m.group(0) for where, text in teaching_texts(lesson).items()
             for pattern in RECIPES if (m := re.search(pattern, text, re.I))}  # fmt: skip
    assert not found, f"a training step's recipe, in order: {found}"


def test_the_check_finds_a_dictated_line():
    """The check above can fail: the docstring 2.1 had before #29 gave its four lines."""
    old = ("First call ``ensure_weights(WEIGHTS)``. Then load the model through the weights API "
           "(``alexnet(weights=WEIGHTS)``), replace ``model.classifier[6]`` by "
           "``nn.Linear(4096, num_classes)``, and :func:`set_mode`.")  # fmt: skip
    pieces = answer_pieces(ROOT / "solutions" / "02_torch_pretrained" / "pretrained.py")
    found = {p for p in pieces if p in _flat(old)} - set(CONTRACT["02_torch_pretrained"])
    assert {"alexnet(weights=WEIGHTS)", "nn.Linear(4096,num_classes)"} <= found, found
    recipe = "For each batch: move it to the device, zero the gradients, forward, loss, backward, step."
    assert all(re.search(pattern, recipe, re.I) for pattern in RECIPES)
