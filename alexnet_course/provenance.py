"""Where a published number came from: one record for ``compare``, ``bench`` and the GPU
check (the command, the commit and what differs from it, the versions, the machine and the
CPU kernels it dispatched to, the date), and paths written so that no machine's absolute
paths reach a committed result."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from alexnet_course import __version__


def git_commit(root: Path | None = None) -> str:
    """The checkout's commit; ``$GIT_COMMIT`` where the copy has no ``.git`` (a lent GPU
    machine gets the working tree only), else "unknown"."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GIT_COMMIT") or "unknown"


def git_uncommitted(root: Path | None = None) -> list[str]:
    """The tracked files whose contents differ from :func:`git_commit` (``git status``'s
    short lines): a run made from them did not run that commit's code alone. Results under
    ``docs/results/`` are outputs, not code (a run writing there would list its own), so
    they are left out. Empty where there is no ``.git``."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              ".", ":(exclude,top)docs/results"], cwd=root,
                             capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "torchvision", "tensorflow", "keras", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


# environment variables that limit which CPU kernels run (an older CPU can be emulated with
# ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2): a run made under them says so
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def kernel_limits() -> dict[str, str]:
    """The :data:`KERNEL_ENV` variables set in this process's environment."""
    return {k: os.environ[k] for k in KERNEL_ENV if os.environ.get(k)}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)  # fmt: skip
    except OSError:
        pass
    return cpu


def hardware_text(device) -> str:
    """The CPU's model, cores and torch threads, the CPU kernels torch dispatches to and any
    :data:`KERNEL_ENV` limit on them; the GPU's name on CUDA."""
    import torch

    text = f"{cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    try:
        text += f"; CPU kernels {torch.backends.cpu.get_cpu_capability()}"
    except AttributeError:  # older torch
        pass
    limits = [f"{k}={v}" for k, v in kernel_limits().items()]
    if limits:
        text += f" (limited by {', '.join(limits)})"
    if device.type == "cuda":
        text += f"; {torch.cuda.get_device_name()}"
    return text


def common_record(device=None, argv: list[str] | None = None, root: Path | None = None) -> dict:
    """What every results file carries beside its numbers: the command as run, the commit and
    any uncommitted tracked change, the library versions, the machine (``device``: a
    ``torch.device``, for the hardware text) and the date."""
    argv = sys.argv[1:] if argv is None else argv
    record = {
        "command": public_text(shlex.join(["alexnet-course", *argv]), root),
        "git_commit": git_commit(root),
        "git_uncommitted": git_uncommitted(root),
        "alexnet_course": __version__,
        "python": platform.python_version(),
        "versions": versions(),
        "kernel_environment": kernel_limits(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device is not None:
        record["hardware"] = hardware_text(device)
    return record


def _public_bases(root: Path | None = None) -> list[tuple[str, str]]:
    """Machine folders and how published results show them, most specific first."""
    bases = [(root or Path.cwd(), ".")]
    if os.environ.get("TMPDIR"):  # only a variable that is set: the reader can expand it
        bases.append((Path(os.environ["TMPDIR"]), "$TMPDIR"))
    bases.append((Path.home(), "~"))
    out = []
    for base, shown in bases:
        b = str(base.resolve())
        if b not in ("/", "") and all(b != o for o, _ in out):
            out.append((b, shown))
    return out


def public_path(path, root: Path | None = None) -> str:
    """A path as results and messages show it: relative to the working folder (or ``root``)
    when inside it, else under ``$TMPDIR`` (where that variable is set) or the home folder as
    ``~``, else as it is: never a variable the reader's shell does not have."""
    p = Path(path).resolve()
    for base, shown in _public_bases(root):
        if p.is_relative_to(base):
            rel = p.relative_to(base)
            if shown == ".":
                return str(rel)
            return shown if str(rel) == "." else f"{shown}/{rel}"
    return str(path)


def public_text(text: str, root: Path | None = None) -> str:
    """``text`` with the working folder (or ``root``), ``$TMPDIR`` (where set) and the home
    folder written as ``.``, ``$TMPDIR`` and ``~``, and this Python's path as ``python3``."""
    import re

    if os.path.isabs(sys.executable):
        text = re.sub(re.escape(sys.executable) + r"(?![\w.-])", "python3", text)
    for base, shown in _public_bases(root):
        text = re.sub(re.escape(base) + r"(?![\w.-])", shown, text)
    return text
