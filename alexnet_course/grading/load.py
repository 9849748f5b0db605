"""How busy the machine is: what lets a time limit or a speed check tell a busy machine from
slow code.

The probe is one thread spinning in Python for a fifth of a second: the share of that time
the kernel let it run (``time.thread_time()`` over the wall clock) is the share of a core a
runnable thread gets right now: 1.0 when a core is free for it, 0.5 when it shares one with
another busy process, 0.33 with two (measured on the project's build machine). Its inverse
is how much slower than on a quiet machine a test runs now (its **slowdown**).

Locally (``pytest lessons/NN``) the plugin takes one probe before the first graded test and
scales every time limit by its slowdown; a test that still runs past its limit while the
machine is busy, or a speed ratio under the bar that the run's own timing noise cannot
tell from the bar, is reported as "machine too busy to judge: rerun when it is quieter"
(listed, not counted), never as the learner's mistake. Under the class grader, and with
``--busy-machine decide``, nothing is scaled or excused: every submission is judged by the
same limits and bars (docs/instructors.md, "A busy machine").

Kept light: no torch, no numpy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest

PROBE_SECONDS = 0.2
BUSY_SHARE = 0.75  # under this share of a core, the machine is too busy to judge a time
MAX_SCALE = 4.0  # a time limit grows at most this much for a busy machine
SHARE_ENV = "ALEXNET_COURSE_LOAD_SHARE"  # the project's tests: the probe reads this instead
BUSY_ENV = "ALEXNET_COURSE_BUSY_MACHINE"  # the default of --busy-machine
MODES = ("excuse", "decide")


@dataclass(frozen=True)
class Load:
    """One probe: the share of a core a runnable thread got, and the load average."""

    share: float
    loadavg: float | None = None

    @property
    def slowdown(self) -> float:
        """How much slower than on a quiet machine a test runs now (1.0 when quiet)."""
        return 1.0 / max(self.share, 1e-3)

    @property
    def busy(self) -> bool:
        return self.share < BUSY_SHARE

    def describe(self) -> str:
        cores = os.cpu_count() or 1
        avg = f"; load average {self.loadavg:.1f} on {cores} cores" if self.loadavg is not None else ""
        return f"a busy thread got {self.share:.0%} of a core{avg}"


def probe(seconds: float = PROBE_SECONDS) -> Load:
    """Spin for ``seconds`` of wall time and measure the share of it this thread ran."""
    try:
        loadavg = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        loadavg = None
    forced = os.environ.get(SHARE_ENV)
    if forced:
        return Load(min(1.0, float(forced)), loadavg)
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    n = 0
    while time.perf_counter() - wall0 < seconds:
        n += 1
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    return Load(min(1.0, cpu / wall) if wall > 0 else 1.0, loadavg)


def scaled(limit: float, load: Load) -> float:
    """A time limit grown by the slowdown ``load`` shows (at most :data:`MAX_SCALE` times)."""
    return limit * min(MAX_SCALE, max(1.0, load.slowdown)) if load.busy else limit


class MachineBusy(pytest.skip.Exception):
    """The machine was too busy to judge this test: a skip, so the run carries on; the plugin
    lists the test as "not judged here (machine too busy)" and counts it neither way. Where
    busy verdicts are not allowed (:func:`excused` is False: the class grader) the plugin
    fails the test instead, and the graded checks never raise it."""


def busy_message(detail: str) -> str:
    """What a learner reads when the machine was too busy to judge a test."""
    return (f"machine too busy to judge speed: rerun when it is quieter. {detail} Nothing "
            "here says your code is wrong, and no points were taken.")


NOISY = 1.15  # a call's median time over its best: above this the timings were disturbed


def too_busy_to_judge(ratio: float, bar: float, noise: float) -> str | None:
    """Why a speed ratio (your time over the reference's, measured in the same run) cannot be
    judged here, or ``None`` when it can. It cannot when it is under ``bar`` by no more than
    the run's timing ``noise`` (the calls' median time over their best) could account for,
    and the machine is busy: the noise shows it, or a probe now or at the start does. Only
    where a run may excuse (:func:`excused`): the class grader judges every ratio."""
    if ratio >= bar or not excused() or ratio * noise < bar:
        return None
    now = probe()
    if noise < NOISY and not now.busy and not at_start().busy:
        return None  # a quiet machine and steady timings: the ratio stands
    return (f"Your code measured {ratio:.2f}x the reference's speed (the bar is {bar}x), but "
            f"the same calls' times varied by up to {noise:.2f}x between rounds, enough to "
            f"hide the difference; {now.describe()}.")


_state: dict = {"excuse": True, "start": None}


def configure(excuse: bool) -> None:
    """Whether this run may excuse a test for a busy machine (the plugin sets it: False under
    the class grader and with ``--busy-machine decide``); forgets the start probe."""
    _state.update(excuse=excuse, start=None)


def excused() -> bool:
    """Whether a test of this run may report the machine as too busy instead of deciding."""
    return _state["excuse"]


def at_start() -> Load:
    """The run's calibration: one probe, taken the first time it is asked for (before the
    first graded test) and kept for the run."""
    if _state["start"] is None:
        _state["start"] = probe()
    return _state["start"]
