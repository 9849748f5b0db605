"""The site's notebooks, committed executed: ``alexnet-course site notebooks`` runs each
against the reference solutions (``execute_notebooks``), and ``notebook_problems`` (a test)
fails a notebook whose code changed since, or with a cell without output or with an error."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

# Under docs/; each is executed from its cwd (the lessons' from the course folder, the
# comparison notebook from docs/, where its default run folder results/cpu lies).
NOTEBOOKS = [f"lessons/{name}_notebook.ipynb" for name in (
    "01_data", "02_torch_pretrained", "03_torch_scratch", "04_keras_scratch", "05_analysis")] + [
    "comparison.ipynb"]  # fmt: skip
NO_OUTPUT_MARKER = "# no output"
META_KEY = "alexnet_course"


def code_hash(nb) -> str:
    """sha256 of a notebook's code cells' sources (markdown edits do not count)."""
    import hashlib

    code = [c.source for c in nb.cells if c.cell_type == "code"]
    return hashlib.sha256("\n\0\n".join(code).encode()).hexdigest()


def notebook_problems(path: Path) -> list[str]:
    """Why a committed notebook's outputs are not current, one line each (empty: they are)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    name = path.name
    recorded = nb.metadata.get(META_KEY, {}).get("code_sha256")
    problems = []
    if recorded is None:
        problems.append(f"{name}: never executed by `alexnet-course site notebooks`")
    elif recorded != code_hash(nb):
        problems.append(f"{name}: a code cell changed since the notebook was executed; "
                        "re-run `alexnet-course site notebooks`")  # fmt: skip
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
        if not outputs and NO_OUTPUT_MARKER not in cell.source:
            problems.append(f"{name}: cell {i} ({first!r}) has no output (execute the notebook, "
                            f"or mark a cell that prints nothing with {NO_OUTPUT_MARKER!r})")  # fmt: skip
        for o in outputs:
            if o.get("output_type") == "error":
                problems.append(f"{name}: cell {i} ({first!r}) raised {o.get('ename')}: "
                                f"{o.get('evalue', '')[:120]}")  # fmt: skip
    return problems


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: removed) for the block; the kernel inherits it."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _random_alexnet_weights(torch_home: Path) -> None:
    """A torch hub cache holding a seeded random AlexNet under the ImageNet weights' file name:
    lesson 02's notebook runs offline with the right shapes (its page says so)."""
    import torch
    import torchvision

    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(
        torchvision.models.alexnet().state_dict(),
        torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth",
    )


# TensorFlow's C++ start-up log (oneDNN, "Could not find cuda drivers"), written to the
# kernel's stderr: about the machine that executed the notebook, not about the lesson
TF_LOG_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|"
    r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]).*\n?",
    re.M,
)


def _tidy_outputs(nb) -> None:
    """Drop TensorFlow's start-up log from stderr and join consecutive pieces of one stream
    (as Jupyter shows them: one block, not one per flush)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                if o.get("name") == "stderr":
                    o["text"] = TF_LOG_LINE.sub("", o["text"])
                    if not o["text"].strip():
                        continue
                last = kept[-1] if kept else {}
                if last.get("output_type") == "stream" and last.get("name") == o.get("name"):
                    last["text"] += o["text"]
                    continue
            kept.append(o)
        cell["outputs"] = kept


def execute_notebooks(root: Path | None = None, names: list[str] | None = None,
                      timeout: int = 600) -> list[Path]:  # fmt: skip
    """Execute the site's notebooks in place with a fresh kernel each, and record the hash of
    their code cells in their metadata (``notebook_problems`` compares it).

    They run against the reference solutions (``ALEXNET_COURSE_IMPL=solutions``), on data
    they generate themselves or on the run committed under docs/results/cpu, with a random
    AlexNet in place of the ImageNet weights file: nothing is downloaded. Seconds each."""
    import tempfile

    import nbclient
    import nbformat

    from alexnet_course.course import course_root

    root = (root or course_root()).resolve()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        _random_alexnet_weights(Path(tmp) / "torch_home")
        env = dict(ALEXNET_COURSE_IMPL="solutions", ALEXNET_COURSE_ROOT=str(root),
                   ALEXNET_COURSE_RUN=None, TORCH_HOME=str(Path(tmp) / "torch_home"),
                   MPLBACKEND=None, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONHASHSEED="0")  # fmt: skip
        with _environ(**env):
            for name in names or NOTEBOOKS:
                path = root / "docs" / name
                nb = nbformat.read(path, as_version=4)
                cwd = root / "docs" if name == "comparison.ipynb" else root
                nbclient.NotebookClient(
                    nb,
                    timeout=timeout,
                    kernel_name="python3",
                    record_timing=False,
                    resources={"metadata": {"path": str(cwd)}},
                ).execute()
                _tidy_outputs(nb)
                nb.metadata[META_KEY] = {
                    "code_sha256": code_hash(nb),
                    "executed_with": "ALEXNET_COURSE_IMPL=solutions",
                }
                nbformat.write(nb, path)
                written.append(path)
    return written


