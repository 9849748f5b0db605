"""Caps and clean-up per submission, across all of its processes.

* **cgroups** (:class:`Cgroups`): a memory and a process-count cap for everything a
  submission's workers start, where the grader can make a cgroup: cgroup v2 where a
  delegated subtree with the memory and pids controllers is writable, else cgroup v1's
  ``memory`` and ``pids`` hierarchies (root).
* **the watchdog** (:class:`Watchdog`), where no cgroup can be made (Gradescope's
  container): every half second it sums the private resident memory of the submission's
  processes (its pool uids' processes, or the test process's descendants) and, in the uid
  tier, the files those uids own in the world-writable folders; past a cap it kills them
  and says so.
* **kill and clean** (:func:`kill_uids`, :func:`remove_files_of`): after each submission
  every process of its pool uids is killed (``kill(-1)`` as that uid, until none is left)
  and every file they own in a world-writable folder is removed, so the next submission on
  that uid starts clean.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

# Runs first in every worker, as the grader's user, before any learner code: joins the
# submission's cgroups, sets the limits, drops to the pool uid (no_new_privs, dies with the
# test process), then becomes the worker. Standard library only (python -I -S).
LAUNCH = r"""
import ctypes, json, os, resource, sys
c = json.loads(sys.argv[1]); argv = sys.argv[3:]
for f in c["cgroups"]:
    with open(f, "w") as fh:
        fh.write(str(os.getpid()))
for name, v in c["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (v, v))
libc = ctypes.CDLL(None, use_errno=True)
if c["uid"] is not None:
    os.setgroups([])
    os.setresgid(c["uid"], c["uid"], c["uid"])
    os.setresuid(c["uid"], c["uid"], c["uid"])
    if os.getuid() != c["uid"] or os.geteuid() != c["uid"]:
        sys.exit("could not switch uid")
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(1, 9, 0, 0, 0) != 0:
    sys.exit("prctl failed")
os.umask(0o077)
os.chdir(c["cwd"])
os.execve(argv[0], argv, c["env"])
"""


WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_SCAN = 50_000  # entries the disk scan visits; a submission making more is over its cap


# ---------------------------------------------------------------- processes
def launch_command(argv: list[str], *, uid: int | None, cwd: str, env: dict,
                   rlimits: dict, cgroups: list[str]) -> list[str]:  # fmt: skip
    """``argv`` behind the launcher (:data:`LAUNCH`)."""
    conf = {"uid": uid, "cwd": cwd, "env": env, "rlimits": rlimits, "cgroups": cgroups}
    return [sys.executable, "-I", "-S", "-c", LAUNCH, json.dumps(conf), "--", *argv]



def _status_uid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])  # the real uid
    except (OSError, ValueError, IndexError):
        return None
    return None


def processes_of(uids: set[int]) -> list[int]:
    """The pids whose real uid is one of ``uids``."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit() and _status_uid(name) in uids:
            out.append(int(name))
    return out


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (not ``root`` itself), by parent links."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, stack = [], [root]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def private_memory(pids: list[int]) -> int:
    """Resident memory not shared with other processes (bytes), summed over ``pids``."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                fields = f.read().split()
            total += max(0, int(fields[1]) - int(fields[2])) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def kill_uids(uids: set[int], deadline_s: float = 20.0) -> int:
    """Kill every process of ``uids`` (root only): a process switched to each uid sends
    SIGKILL to every process it may signal, again until none is left. Returns how many were
    found at first."""
    import subprocess

    uids = {u for u in uids if u is not None}
    if not uids or os.geteuid() != 0:
        return 0
    first = len(processes_of(uids))
    end = time.monotonic() + deadline_s
    code = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
    while processes_of(uids) and time.monotonic() < end:
        for uid in uids:
            cmd = launch_command([sys.executable, "-I", "-S", "-c", code], uid=uid, cwd="/",
                                 env={}, rlimits={}, cgroups=[])  # fmt: skip
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)  # fmt: skip
        time.sleep(0.02)
    return first


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------- files
def files_of(uids: set[int], roots: list[Path]) -> tuple[int, int, list[Path]]:
    """(bytes, files, top-level paths) owned by ``uids`` under ``roots`` (never following
    links, never entering a folder they could not have written into); stops counting after
    :data:`MAX_SCAN` entries."""
    size = count = 0
    tops: list[Path] = []
    seen = 0
    for root in roots:
        stack = [(root, True)]
        while stack:
            here, top = stack.pop()
            try:
                entries = list(os.scandir(here))
            except OSError:
                continue
            for e in entries:
                seen += 1
                if seen > MAX_SCAN:
                    return size, max(count, MAX_SCAN), tops
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                owned = st.st_uid in uids
                if owned:
                    count += 1
                    size += st.st_blocks * 512
                    if top:
                        tops.append(Path(e.path))
                # only a folder the uids own, or one anyone may write to, can hold what they
                # wrote: the others (a checkout or a virtual environment under /tmp, with
                # 100000 files) are not visited, so they never count against the cap
                if stat.S_ISDIR(st.st_mode) and (owned or st.st_mode & stat.S_IWOTH):
                    stack.append((Path(e.path), top and not owned))
    return size, count, tops


def remove_files_of(uids: set[int], roots: list[Path] | None = None) -> int:
    """Remove what ``uids`` own in the world-writable folders; returns how many trees."""
    import shutil

    uids = {u for u in uids if u is not None}
    if not uids:
        return 0
    _, _, tops = files_of(uids, [Path(r) for r in (roots or WRITABLE)])
    for p in tops:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
        except OSError:
            pass
    return len(tops)


# ---------------------------------------------------------------- cgroups
class Cgroups:
    """A memory and a process-count cap for one submission, where cgroups can be made."""

    def __init__(self, procs_files: list[str], dirs: list[Path], kind: str) -> None:
        self.procs_files, self.dirs, self.kind = procs_files, dirs, kind

    @classmethod
    def make(cls, name: str, memory_mb: int, processes: int) -> Cgroups | None:
        """A new cgroup pair, or ``None`` where the grader cannot make one."""
        try:
            return _make_v2(name, memory_mb, processes) or _make_v1(name, memory_mb, processes)
        except OSError:
            return None

    def oom_kills(self) -> int:
        """How many processes the kernel has stopped at the memory cap so far."""
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    for line in (d / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
                except (OSError, ValueError):
                    continue
        return 0

    def pids(self) -> list[int]:
        out: set[int] = set()
        for f in self.procs_files:
            try:
                out |= {int(x) for x in Path(f).read_text().split()}
            except (OSError, ValueError):
                pass
        return sorted(out)

    def remove(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            kill_pids(pids)
            time.sleep(0.05)
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:
                pass


def _own_cgroup(controller: str | None) -> str | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if controller is None and parts[0] == "0" and parts[1] == "":
            return parts[2]
        if controller is not None and controller in parts[1].split(","):
            return parts[2]
    return None


def _make_v2(name: str, memory_mb: int, processes: int) -> Cgroups | None:
    base = Path("/sys/fs/cgroup")
    if not (base / "cgroup.controllers").is_file():
        return None
    own = _own_cgroup(None)
    if own is None:
        return None
    parent = base / own.lstrip("/")
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    if not {"memory", "pids"} <= set(enabled) or not os.access(parent, os.W_OK):
        return None
    d = parent / name
    d.mkdir()
    try:
        (d / "memory.max").write_text(str(memory_mb * 2**20))
        (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
        (d / "pids.max").write_text(str(processes))
    except OSError:
        d.rmdir()
        return None
    return Cgroups([str(d / "cgroup.procs")], [d], "cgroup v2")


def _make_v1(name: str, memory_mb: int, processes: int) -> Cgroups | None:
    made: list[Path] = []
    try:
        dirs = {}
        for controller in ("memory", "pids"):
            root = Path("/sys/fs/cgroup") / controller
            own = _own_cgroup(controller)
            if own is None or not (root / "cgroup.procs").exists():
                return None
            d = root / own.lstrip("/") / name
            d.mkdir()
            made.append(d)
            dirs[controller] = d
        (dirs["memory"] / "memory.limit_in_bytes").write_text(str(memory_mb * 2**20))
        (dirs["pids"] / "pids.max").write_text(str(processes))
    except OSError:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                pass
        return None
    return Cgroups([str(d / "cgroup.procs") for d in dirs.values()], list(dirs.values()),
                   "cgroup v1")  # fmt: skip


# ---------------------------------------------------------------- the watchdog
class Watchdog:
    """Sums a submission's memory (and, with ``disk_roots``, what its uids wrote) twice a
    second while its tests run (reactive: a fast disk can take what it writes in half a
    second past the cap before it acts); over a cap it kills the submission's processes and records
    why (``events``). ``who()`` lists the submission's processes."""

    def __init__(self, who, memory_bytes: int, disk_bytes: int = 0, uids: set[int] = frozenset(),
                 disk_roots: list[Path] = ()) -> None:  # fmt: skip
        self.who, self.memory_bytes, self.disk_bytes = who, memory_bytes, disk_bytes
        self.uids, self.disk_roots = set(uids), list(disk_roots)
        self.events: list[str] = []
        self.peak_memory = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(0.5):
            tick += 1
            pids = self.who()
            used = private_memory(pids)
            self.peak_memory = max(self.peak_memory, used)
            if self.memory_bytes and used > self.memory_bytes:
                kill_pids(pids)
                self.events.append(f"the submission's processes used {used >> 20} MB of memory "
                                   f"together, over its cap of {self.memory_bytes >> 20} MB: "
                                   "they were stopped")  # fmt: skip
            if self.disk_bytes and self.uids:
                size, count, _ = files_of(self.uids, self.disk_roots)
                if size > self.disk_bytes or count >= MAX_SCAN:
                    kill_pids(self.who())
                    remove_files_of(self.uids, self.disk_roots)
                    self.events.append(f"the submission wrote {size >> 20} MB in {count} files, "
                                       f"over its cap of {self.disk_bytes >> 20} MB: its "
                                       "processes were stopped and the files removed")  # fmt: skip
