"""Tamper evidence for graded runs, used by the plugin when the grader drives it.

Results leave the test process one line at a time, as soon as each test ends, through a
pipe the grader opened (not a file a learner could write), each line authenticated with a
key the plugin read from a second pipe before any learner code ran. After every test the
plugin checks that pytest's machinery, the grading modules and the test modules still hold
the same functions: a learner's code that monkeypatches them is reported, and the grader
re-runs the remaining tests in a fresh process.

Residual risk, stated: learner code runs in the same process and with the same user as the
test, so a determined attacker who reads the interpreter's memory (``gc``) or signals every
process (``kill -1``) is out of reach of any in-process check; run the grader as its own
user, or in a container, for high-stakes grading.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import types

REPORT_FD_ENV = "ALEXNET_COURSE_REPORT_FD"
KEY_FD_ENV = "ALEXNET_COURSE_KEY_FD"
WATCHED_MODULES = (
    "pytest", "_pytest.runner", "_pytest.python", "_pytest.reports", "_pytest.main",
    "_pytest.outcomes", "_pytest.fixtures", "_pytest.terminal", "pluggy", "pluggy._callers",
    "pluggy._hooks", "alexnet_course.grading.plugin", "alexnet_course.grading.checks",
    "alexnet_course.grading.learner", "alexnet_course.grading.integrity", "builtins",
)  # fmt: skip
# torch and numpy are not watched: torch replaces some of its own functions lazily (importing
# torch._dynamo wraps torch.manual_seed), which would flag honest submissions.


def sign(key: bytes, record: dict) -> str:
    body = json.dumps(record, sort_keys=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def verify(key: bytes, line: str) -> dict | None:
    """The record of one line, or ``None`` when it is not authentic."""
    try:
        record = json.loads(line)
        mac = record.pop("mac")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return record if hmac.compare_digest(mac, sign(key, record)) else None


class Channel:
    """The plugin's end: authenticated lines to the grader."""

    def __init__(self) -> None:
        self.fd = None
        self.key = b""
        self.seq = 0
        self._write = os.write  # bound now: patching os.write later changes nothing here
        fd = os.environ.pop(REPORT_FD_ENV, None)
        key_fd = os.environ.pop(KEY_FD_ENV, None)
        if fd is None or key_fd is None:
            return
        self.fd = int(fd)
        with os.fdopen(int(key_fd), "rb") as f:
            self.key = f.read()

    @property
    def active(self) -> bool:
        return self.fd is not None

    def send(self, record: dict) -> None:
        if self.fd is None:
            return
        self.seq += 1
        record = {**record, "seq": self.seq}
        record["mac"] = sign(self.key, record)
        data = (json.dumps(record) + "\n").encode()
        while data:
            n = self._write(self.fd, data)
            data = data[n:]


def _members(obj) -> dict[str, int]:
    out = {}
    for name, value in list(vars(obj).items()):
        if callable(value) or isinstance(value, (staticmethod, classmethod, property)):
            out[name] = id(value)
    return out


def snapshot(extra_modules: list[types.ModuleType] = ()) -> dict[str, dict[str, int]]:
    """Identities of the functions and classes (and their methods) that grading relies on."""
    snap: dict[str, dict[str, int]] = {}
    mods = [sys.modules[m] for m in WATCHED_MODULES if m in sys.modules] + list(extra_modules)
    for mod in mods:
        snap[mod.__name__] = _members(mod)
        for name, value in list(vars(mod).items()):
            if isinstance(value, type) and getattr(value, "__module__", None) == mod.__name__:
                snap[f"{mod.__name__}.{name}"] = _members(value)
    return snap


def changed(before: dict[str, dict[str, int]], extra_modules=()) -> list[str]:
    """Names whose identity changed since ``before`` (new names are not counted)."""
    now = snapshot(extra_modules)
    out = []
    for scope, members in before.items():
        current = now.get(scope, {})
        for name, ident in members.items():
            if name in current and current[name] != ident:
                out.append(f"{scope}.{name}")
            elif name not in current:
                out.append(f"{scope}.{name} (deleted)")
    return out
