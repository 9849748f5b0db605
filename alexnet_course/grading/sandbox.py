"""Where learner code runs when a class is graded: a worker process in a sandbox tier.

The worker (:func:`alexnet_course.grading.worker.serve`) runs the observe halves of the
graded tests. Every tier keeps the trusted test list and the verdicts out of it; they differ
in what else learner code can reach (docs/instructors.md has the threat model):

* ``bwrap``: Debian's bubblewrap. New user, PID, network, IPC, UTS and cgroup namespaces;
  read-only: the Python installation, the virtual environment and a copy of the course
  library that holds only what the tests need (:data:`WORKER_LIBRARY`); writable: its own
  lesson folder and ``/tmp``, both size-capped tmpfs. When the grader is root, the sandbox
  is also started as a pool uid (below), so that process counts are per submission.
* ``uid``: for hosts where bwrap cannot start (Docker without user namespaces, as in
  Gradescope's container; CI runners). The worker runs as a dedicated unprivileged uid from
  a pool, one pair per concurrent submission (Submitty's untrusted users), with
  ``no_new_privs``; the grader's files, ``--out``, solutions and other submissions are
  unreadable to it (checked before grading), and after each submission every process of
  that uid is killed and every file it left in a world-writable folder removed. Needs root.
* ``none``: a plain process of the grader's user, only when asked for.

Per-submission caps (:mod:`.confine`): memory and process count in a cgroup where one can be
made (v2 delegated, or v1 as root), else the process count per uid (RLIMIT_NPROC, counted in
the sandbox's own user namespace or for the pool uid) and a watchdog that sums the memory
and the written files of the submission's processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.grading.confine import kill_uids, launch_command, processes_of

# The course library as the worker sees it: enough to import the graded tests and the
# learner files (alexnet_course.weights is imported by lesson 02's learner file; lesson 01's
# tests write CIFAR-10 files with alexnet_course.data.cifar10's py2_pickle).
WORKER_LIBRARY = (
    "__init__.py", "course.py", "device.py", "weights.py", "grading/__init__.py", "grading/learner.py",
    "grading/checks.py", "grading/draws.py", "grading/remote.py", "grading/wire.py", "grading/worker.py",
    "data/__init__.py", "data/cifar10.py", "data/synthetic.py",
)  # fmt: skip
TIERS = ("auto", "bwrap", "uid", "none")
COURSE_MOUNT = "/course"
WORK_MOUNT = "/submission"
DEFAULT_UIDS = range(61000, 61064)  # 32 pairs: one pair per submission graded at once
POOL_ENV = "ALEXNET_COURSE_UID_POOL"  # another pool, e.g. for graders run side by side
BOOT = (
    "import sys; {nproc}sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
    "getattr(f, '__module__', type(f).__module__)]; sys.path.insert(0, {course!r}); "
    "from alexnet_course.grading.worker import serve; serve({folder!r}, {files!r})"
)
class SandboxError(CourseError):
    """The sandbox tier asked for cannot run here; the message says why and what would."""


@dataclass(frozen=True)
class Limits:
    """What one submission may use. ``memory_mb``, ``processes`` and ``disk_mb`` hold
    across all of its processes; ``cpu_seconds`` and ``file_mb`` per process."""

    memory_mb: int = 6144
    cpu_seconds: int = 3600
    file_mb: int = 1024
    disk_mb: int = 1024
    processes: int = 256


@dataclass(frozen=True)
class Tier:
    """The sandbox tier a run uses: ``bwrap``, ``uid`` or ``none``, and why."""

    name: str
    why: str = ""
    uids: tuple[int, ...] = ()  # the pool (root only): two per concurrent submission
    caps: str = ""  # how the per-submission caps hold (confine.describe)

    @property
    def drops_uid(self) -> bool:
        return bool(self.uids)


@dataclass
class Slot:
    """One concurrent submission's place: its two uids (visible, hidden workers) and cgroups."""

    index: int
    uids: tuple[int | None, int | None] = (None, None)
    cgroups: list[str] = field(default_factory=list)  # cgroup.procs files to join


def worker_library(dest: Path) -> Path:
    """Write the worker's copy of the course library into ``dest`` (returns ``dest``),
    readable by every user (a pool uid imports it)."""
    pkg = Path(__file__).resolve().parents[1]
    for rel in WORKER_LIBRARY:
        target = dest / "alexnet_course" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pkg / rel, target)
    for p in [dest, *dest.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dest


# ---------------------------------------------------------------- choosing a tier
def _bwrap() -> str | None:
    return shutil.which("bwrap")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def pool(spec: str | None = None) -> tuple[int, ...]:
    """The uid pool: ``"61000-61063"`` (a range), else ``$ALEXNET_COURSE_UID_POOL``, else
    the default."""
    spec = spec or os.environ.get(POOL_ENV)
    if not spec:
        return tuple(DEFAULT_UIDS)
    try:
        lo, _, hi = spec.partition("-")
        uids = tuple(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise SandboxError(f"--uid-pool {spec!r}: give a range such as 61000-61063") from None
    if not uids or min(uids) < 1000:
        raise SandboxError(f"--uid-pool {spec!r}: uids below 1000 belong to the system")
    return uids


def choose(requested: str = "auto", uids: tuple[int, ...] | None = None) -> Tier:
    """The tier to grade with. ``auto``: bwrap where it starts, else the uid tier where the
    grader can switch uids, else :class:`SandboxError` with one line; ``none`` only when
    asked for by name. A tier with pool uids holds the pool until :func:`release`."""
    if requested not in TIERS:
        raise SandboxError(f"--sandbox {requested!r}: choose one of {', '.join(TIERS)}")
    uids = uids or pool()
    if requested == "none":
        return Tier("none", "asked for (--sandbox none)")
    try:
        if requested == "bwrap":
            return _bwrap_tier(uids)
        if requested == "uid":
            return _uid_tier(uids)
        try:
            return _bwrap_tier(uids)
        except SandboxError as e:
            bwrap_why = str(e)
        try:
            tier = _uid_tier(uids)
        except SandboxError as e:
            raise SandboxError(f"no sandbox can run here: {bwrap_why}; and {e}. Pass --sandbox "
                               "none only for a class you trust (learner code then runs as "
                               "your user)") from None  # fmt: skip
        return Tier(tier.name, f"bubblewrap cannot run here ({bwrap_why})", tier.uids)
    except SandboxError:
        release(uids)
        raise


def release(uids: tuple[int, ...]) -> None:
    """Give the uid pool back (see :func:`choose`): another grader may use it now."""
    fd = _HELD.pop(tuple(uids), None)
    if fd is not None:
        os.close(fd)


def _bwrap_tier(uids: tuple[int, ...]) -> Tier:
    exe = _bwrap()
    if exe is None:
        raise SandboxError("bubblewrap (bwrap) is not installed (Debian: apt-get install "
                           "bubblewrap)")  # fmt: skip
    drop = _is_root()
    if drop:
        _uids_free(uids)
    probe = [exe, *_namespace_flags(), *_system_binds(), "--", sys.executable, "-I", "-S",
             "-c", "pass"]  # fmt: skip
    r = _run_launched(probe, uid=uids[0] if drop else None)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise SandboxError(f"bubblewrap cannot create a sandbox here ({why})")
    return Tier("bwrap", "bubblewrap starts here", uids if drop else ())


def _uid_tier(uids: tuple[int, ...]) -> Tier:
    if not _is_root():
        raise SandboxError("the uid tier needs the grader to run as root (it switches learner "
                           "code to unprivileged uids)")  # fmt: skip
    _uids_free(uids)
    r = _run_launched([sys.executable, "-s", "-c", "import numpy, pytest"], uid=uids[0])
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise SandboxError(f"an unprivileged uid cannot run this Python ({sys.executable}: "
                           f"{why}); install the course in a Python every user can read, "
                           "e.g. not under /root or a private home folder")  # fmt: skip
    return Tier("uid", "asked for" if not uids else "root can switch uids", uids)


_HELD: dict[tuple[int, ...], int] = {}  # pools this process holds: their lock files' fds


def _uids_free(uids: tuple[int, ...]) -> None:
    """Reserve the pool for this process (a lock file, held until :func:`release`): no user
    may own its uids and no other grader may use them. Processes a crashed grader left under
    them are killed."""
    import fcntl
    import pwd

    taken = []
    for uid in uids:
        try:
            taken.append(f"{uid} ({pwd.getpwuid(uid).pw_name})")
        except KeyError:
            pass
    if taken:
        raise SandboxError(f"the uid pool holds uids of existing users: {', '.join(taken[:3])}; "
                           "choose free ones with --uid-pool")  # fmt: skip
    if uids in _HELD:
        return
    lock = Path(tempfile.gettempdir()) / f"alexnet-course-uids-{uids[0]}-{uids[-1]}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SandboxError(f"another grader is using the uid pool {uids[0]}-{uids[-1]} (it "
                           f"holds {lock}); wait for it, or choose other uids with "
                           "--uid-pool") from None  # fmt: skip
    _HELD[uids] = fd
    if processes_of(set(uids)):  # left by a grader that died: nobody else may use the pool
        kill_uids(set(uids))


def _run_launched(argv: list[str], uid: int | None, cwd: str = "/") -> subprocess.CompletedProcess:
    cmd = launch_command(argv, uid=uid, cwd=cwd, env=_base_env("/tmp"), rlimits={}, cgroups=[])
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        return subprocess.CompletedProcess(cmd, 1, "", f"could not start: {e}")


def readable_by(uid: int, paths: list[Path]) -> list[str]:
    """Those of ``paths`` that ``uid`` can list or read (a probe run as that uid)."""
    code = ("import os, sys\nfor p in sys.argv[1:]:\n    try:\n        os.listdir(p) if "
            "os.path.isdir(p) else open(p, 'rb').close()\n        print(p)\n    except "
            "OSError:\n        pass\n")  # fmt: skip
    r = _run_launched([sys.executable, "-I", "-S", "-c", code, *map(str, paths)], uid=uid)
    return [line for line in r.stdout.splitlines() if line]


# ---------------------------------------------------------------- commands
def rlimits(limits: Limits) -> dict:
    mem = limits.memory_mb * 2**20
    size = min(limits.file_mb, limits.disk_mb) * 2**20
    return {"RLIMIT_DATA": mem, "RLIMIT_CPU": limits.cpu_seconds, "RLIMIT_FSIZE": size,
            "RLIMIT_CORE": 0}  # fmt: skip


def _base_env(home: str) -> dict:
    env = {"HOME": home, "TMPDIR": home, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg", "TORCH_HOME": f"{home}/torch",
           "MPLCONFIGDIR": f"{home}/mpl", "TF_CPP_MIN_LOG_LEVEL": "2", "LANG": "C.UTF-8"}  # fmt: skip
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                "CUDA_VISIBLE_DEVICES", "ALEXNET_COURSE_DEVICE", "MALLOC_MMAP_MAX_",
                "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"):  # fmt: skip
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def _namespace_flags() -> list[str]:
    return ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev"]  # fmt: skip


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
    for p in sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}):
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


def worker_command(folder: Path, library: Path, tier: Tier, *, uid: int | None = None,
                   limits: Limits = Limits(), cgroups: list[str] | None = None,
                   files: list[str] | None = None) -> list[str]:  # fmt: skip
    """The command that starts a worker over the lesson folder ``folder`` (pristine test
    views and the learner's files), which imports ``files`` (the learner files) first."""
    files = list(files or [])
    cgroups = list(cgroups or [])
    limits_now = rlimits(limits)
    if tier.name == "none":
        boot = BOOT.format(nproc="", course=str(library), folder=str(folder), files=files)
        return launch_command([sys.executable, "-s", "-c", boot], uid=None, cwd=str(folder),
                              env=_base_env(str(folder / ".home")), rlimits=limits_now,
                              cgroups=cgroups)  # fmt: skip
    if tier.name == "uid":
        boot = BOOT.format(nproc="", course=str(library), folder=str(folder), files=files)
        limits_now["RLIMIT_NPROC"] = limits.processes  # counted for this pool uid
        return launch_command([sys.executable, "-s", "-c", boot], uid=uid, cwd=str(folder),
                              env=_base_env(str(folder / ".home")), rlimits=limits_now,
                              cgroups=cgroups)  # fmt: skip
    inside = f"{WORK_MOUNT}/{folder.name}"
    if tier.drops_uid:
        limits_now["RLIMIT_NPROC"] = limits.processes  # counted for the pool uid
        nproc = ""
    else:  # counted in the sandbox's own user namespace: per sandbox, not per grader
        nproc = (f"import resource; resource.setrlimit(resource.RLIMIT_NPROC, "
                 f"({limits.processes}, {limits.processes})); ")  # fmt: skip
    boot = BOOT.format(nproc=nproc, course=COURSE_MOUNT, folder=inside, files=files)
    env = []
    for k, v in _base_env("/tmp").items():
        env += ["--setenv", k, v]
    disk = str(limits.disk_mb * 2**20 // 2)  # half for /tmp, half for the lesson folder
    binds = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.is_symlink():
            binds += ["--ro-bind", str(p), f"{inside}/{p.name}"]
    argv = [_bwrap() or "bwrap", *_namespace_flags(), "--size", disk, "--tmpfs", "/tmp",
            *_system_binds(), *_hide_installed_library(), "--ro-bind", str(library),
            COURSE_MOUNT, "--size", disk, "--tmpfs", inside, *binds, "--chdir", inside, *env,
            "--", sys.executable, "-s", "-c", boot]  # fmt: skip
    return launch_command(argv, uid=uid if tier.drops_uid else None, cwd="/",
                          env={"PATH": "/usr/bin:/bin"}, rlimits=limits_now, cgroups=cgroups)  # fmt: skip


def test_process_limits(limits: Limits):
    """A ``preexec_fn`` for the grader's own test process (trusted: it runs no learner
    code): memory, CPU time and file size, never a process count (RLIMIT_NPROC counts per
    user across the machine: a submission filling it would stop a classmate's tests)."""

    def apply() -> None:
        import resource

        for name, v in rlimits(limits).items():
            resource.setrlimit(getattr(resource, name), (v, v))

    return apply
