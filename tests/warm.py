"""Many short pytest sessions without paying for imports each time.

The project's mutant and alternative checks run a lesson's graded suite in a fresh process
dozens of times. Most of each run used to be importing torch (and TensorFlow for lesson 04).
Here one server process (multiprocessing's ``forkserver``) imports those libraries once;
every run is a child forked from it: a new process, with its own working folder,
environment and output, that has not imported any lesson code, exactly as a fresh
``python -m pytest`` would start, only with the heavy libraries already loaded.

As with any multiprocessing start method but fork, a plain script that calls this needs an
``if __name__ == "__main__":`` guard (pytest's own main module is never re-run).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

PRELOAD = ["numpy", "torch", "torchvision", "tensorflow", "keras", "pytest",
           "alexnet_course.grading.plugin"]


@functools.cache  # one server per process, its preload list worked out once
def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([m for m in PRELOAD if _importable(m)] + [__name__])
    return ctx


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name.split(".")[0]) is not None


def peak_kb() -> int:
    """This process's peak resident size in kB (Linux's VmHWM; 0 where it cannot be read)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _child(argv: list[str], cwd: str, env: dict, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    # temporary files go beside the log, in the calling test's tmp_path: this child leaves by
    # os._exit, so atexit never runs, and TensorFlow's autograph files would stay in /tmp
    tmp = Path(log + ".tmp")
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # the server may have read TMPDIR already
    os.chdir(cwd)
    sys.path[0:0] = [cwd]  # as `python -m pytest` from cwd
    sys.dont_write_bytecode = True
    rc = 1
    try:
        import torch

        if env.get("OMP_NUM_THREADS"):  # read at torch's import, which happened in the server
            torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
        import pytest

        rc = int(pytest.main(argv))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:  # this run's peak resident size, for the suite's memory record (tests/conftest.py)
            Path(log + ".peak_kb").write_text(str(peak_kb()))
        except OSError:
            pass
        os._exit(rc)


def run_pytest_warm(argv: list[str], *, cwd: Path, env: dict, log: Path, timeout: float) -> int:
    """``python -m pytest *argv`` in a child of the warm server; its exit code (-9 when it
    ran past ``timeout`` and was killed)."""
    proc = _context().Process(target=_child, args=(argv, str(cwd), env, str(log)))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return proc.exitcode
