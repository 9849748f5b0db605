"""Where learner code runs when a class is graded: a worker process in a bubblewrap sandbox.

The worker (:func:`alexnet_course.grading.remote.serve`) runs the observe halves of the
graded tests. It sees, read-only, the Python installation, the virtual environment and a
copy of the course library that holds only what the tests need (:data:`WORKER_LIBRARY`: no
data pipeline, no comparison runner, nothing that answers a lesson's tasks); read-write,
its own lesson folder (pristine tests and the learner's files) and an empty private
``/tmp``. It does not see the instructor's checkout, ``solutions/``, the grader's output
folder, other submissions, hidden tests other than its own, or any home folder. It gets new
user, PID, network, IPC, UTS and cgroup namespaces, dies with its parent, and runs under
limits on memory, CPU time, file size and (where the machine allows) number of processes.

``--no-sandbox`` (macOS, a container without user namespaces) runs the same worker as a
plain process in its own session with the same limits. It keeps the trusted test list and
the verdicts outside learner code; it gives up the file-system and process isolation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from alexnet_course import CourseError

# The course library as the worker sees it: enough to import the graded tests and the
# learner files (alexnet_course.weights is imported by lesson 02's learner file).
WORKER_LIBRARY = (
    "__init__.py", "device.py", "weights.py", "grading/__init__.py", "grading/learner.py",
    "grading/checks.py", "grading/remote.py",
)  # fmt: skip
COURSE_MOUNT = "/course"
WORK_MOUNT = "/submission"
BOOT = (
    "import sys; {pdeath}sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
    "getattr(f, '__module__', type(f).__module__)]; sys.path.insert(0, {course!r}); "
    "from alexnet_course.grading.remote import serve; serve({folder!r})"
)
NO_SANDBOX_HINT = ("pass --no-sandbox to grade without it: the test list and the verdicts "
                   "still stay out of learner code, but learner code then runs as your user "
                   "and can read and write what you can (other submissions, --out, the course)")  # fmt: skip


class SandboxError(CourseError):
    """bubblewrap is missing or cannot create its namespaces here."""


@dataclass
class Limits:
    memory_mb: int = 6144
    cpu_seconds: int = 3600
    file_mb: int = 1024
    processes: int = 512


def worker_library(dest: Path) -> Path:
    """Write the worker's copy of the course library into ``dest`` (returns ``dest``)."""
    pkg = Path(__file__).resolve().parents[1]
    for rel in WORKER_LIBRARY:
        target = dest / "alexnet_course" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pkg / rel, target)
    return dest


def _bwrap() -> str | None:
    return shutil.which("bwrap")


def check_sandbox() -> None:
    """Raise :class:`SandboxError` unless bubblewrap can start a sandbox here."""
    exe = _bwrap()
    if exe is None:
        raise SandboxError("bubblewrap (bwrap) is not installed (Debian: apt-get install "
                           f"bubblewrap); {NO_SANDBOX_HINT}")  # fmt: skip
    probe = [exe, *_namespace_flags(), *_system_binds(), "--", sys.executable, "-c", "pass"]
    try:
        r = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxError(f"bubblewrap could not start ({e}); {NO_SANDBOX_HINT}") from None
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise SandboxError(f"bubblewrap cannot create a sandbox here ({why}); {NO_SANDBOX_HINT}")


def _namespace_flags() -> list[str]:
    return ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # fmt: skip


def _system_binds() -> list[str]:
    """The system's programs and libraries, read-only, and the Python installation."""
    args = []
    for top in ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin"):
        p = Path(top)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            args += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf"):
        if Path(f).exists():
            args += ["--ro-bind", f, f]
    if Path("/etc/ld.so.conf.d").is_dir():
        args += ["--ro-bind", "/etc/ld.so.conf.d", "/etc/ld.so.conf.d"]
    # the interpreter and the virtual environment (both may live outside /usr)
    for p in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}:
        if not str(p).startswith("/usr/"):
            args += ["--ro-bind", str(p), str(p)]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # CUDA, for the gpu-marked tests
        args += ["--dev-bind", str(dev), str(dev)]
    return args


def _hide_installed_library() -> list[str]:
    """A non-editable install puts the whole course library into site-packages: hide it."""
    args = []
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key]) / "alexnet_course"
        if site.is_dir():
            args += ["--tmpfs", str(site)]
    return args


def worker_command(folder: Path, library: Path, *, sandbox: bool) -> list[str]:
    """The command that starts a worker over the lesson folder ``folder``."""
    if not sandbox:
        # no sandbox: at least die with the test process (Linux), like bwrap's --die-with-parent
        pdeath = ("import ctypes; ctypes.CDLL(None).prctl(1, 9); "
                  if sys.platform.startswith("linux") else "")  # fmt: skip
        boot = BOOT.format(pdeath=pdeath, course=str(library), folder=str(folder))
        return [sys.executable, "-s", "-c", boot]
    inside = f"{WORK_MOUNT}/{folder.name}"
    boot = BOOT.format(pdeath="", course=COURSE_MOUNT, folder=inside)
    env = ["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "PATH",
           "/usr/bin:/bin", "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv",
           "PYTHONNOUSERSITE", "1", "--setenv", "MPLBACKEND", "Agg", "--setenv",
           "TORCH_HOME", "/tmp/torch"]  # fmt: skip
    for var in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "ALEXNET_COURSE_DEVICE"):
        if var in os.environ:
            env += ["--setenv", var, os.environ[var]]
    return [_bwrap() or "bwrap", *_namespace_flags(), *_system_binds(),
            *_hide_installed_library(), "--ro-bind", str(library), COURSE_MOUNT,
            "--bind", str(folder), inside, "--chdir", inside, *env,
            "--", sys.executable, "-s", "-c", boot]  # fmt: skip


def apply_limits(limits: Limits):
    """A ``preexec_fn`` that puts the limits on the process about to start (and so on its
    children: the sandbox and everything learner code starts)."""

    def apply() -> None:
        import resource

        mem = limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        size = limits.file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.geteuid() != 0:  # the kernel does not apply RLIMIT_NPROC to root
            n = limits.processes
            resource.setrlimit(resource.RLIMIT_NPROC, (n, n))

    return apply
