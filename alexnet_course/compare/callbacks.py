"""What happens at every training step besides the step: callbacks the runner calls
(Keras callbacks and Lightning hooks are the model), never exceptions raised through the
lesson's training loop.

The lesson's ``train_one_epoch`` iterates over batches; :func:`stepped` hands it the
batches and, after each, calls every callback's ``after_step``. A callback that needs the
epoch to stop (the :class:`Replanner`, when the plan must be made again) returns ``True``:
the batches end there, the lesson's loop returns normally, and the arm sees
``replanner.new_plan`` and hands it back to the runner.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable, Iterator

from alexnet_course.compare import plan as plan_mod

LIVE_ESTIMATE_AFTER = 5  # batches: then each arm prints its expected time
# With --budget-minutes, the first arm's steps after the first REPLAN_STEPS[0] up to
# REPLAN_STEPS[1] (before the thread watch's first probe) are timed against the plan's step
REPLAN_STEPS = (2, 10)
REPLAN_TOLERANCE = 1.05  # slower than planned by more than this: the plan is made again


class Callback:
    def on_epoch_start(self, epoch: int) -> None:
        """Before the epoch's first batch."""

    def after_step(self, epoch: int, step: int) -> bool:
        """After batch ``step`` (from 1); ``True`` stops the epoch."""
        return False


def stepped(batches: Iterable, callbacks: list[Callback], epoch: int) -> Iterator:
    """``batches``, with every callback called after each batch."""
    for cb in callbacks:
        cb.on_epoch_start(epoch)
    for i, batch in enumerate(batches, 1):
        yield batch
        stop = False
        for cb in callbacks:
            stop = cb.after_step(epoch, i) or stop
        if stop:
            return


class ScheduleStep(Callback):
    """The learning-rate schedule steps once per batch."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def after_step(self, epoch: int, step: int) -> bool:
        self.scheduler.step()
        return False


class Progress(Callback):
    """A progress bar (tqdm) that counts batches."""

    def __init__(self, bar) -> None:
        self.bar = bar

    def after_step(self, epoch: int, step: int) -> bool:
        self.bar.update(1)
        return False


class Threads(Callback):
    """On a CPU, the torch thread count follows the load (:class:`.settings.ThreadWatch`)."""

    def __init__(self, watch) -> None:
        self.watch = watch

    def on_epoch_start(self, epoch: int) -> None:
        self.watch.restart()

    def after_step(self, epoch: int, step: int) -> bool:
        self.watch.tick()
        return False


class LiveEstimate(Callback):
    """After :data:`LIVE_ESTIMATE_AFTER` batches of the arm's first epoch, print how long
    the arm needs (and what the plan said)."""

    def __init__(self, arm: str, steps: int, epochs_left: int, first_epoch: int, plan) -> None:
        self.arm, self.steps, self.epochs_left = arm, steps, epochs_left
        self.first_epoch, self.plan = first_epoch, plan
        self.t0 = time.perf_counter()

    def on_epoch_start(self, epoch: int) -> None:
        self.t0 = time.perf_counter()

    def after_step(self, epoch: int, step: int) -> bool:
        if step == LIVE_ESTIMATE_AFTER and epoch == self.first_epoch:
            step_s = (time.perf_counter() - self.t0) / step
            left = step_s * self.steps * self.epochs_left * (1 + 0.15)  # evaluations: ~15%
            planned = self.plan.estimated_seconds.get(self.arm) if self.plan is not None else None
            note = f" (planned ~{planned / 60:.1f} min)" if planned else ""
            print(f"\n[{self.arm}] {1 / step_s:.2f} batch/s after {LIVE_ESTIMATE_AFTER} batches: "
                  f"this arm needs ~{left / 60:.1f} min more{note}", flush=True)  # fmt: skip
        return False


def clock() -> float:
    return time.perf_counter()


class Replanner(Callback):
    """With ``--budget-minutes`` (one process), the first arm's steps
    ``REPLAN_STEPS[0] + 1`` .. ``REPLAN_STEPS[1]`` are timed, and their median is compared
    with the plan's measured step. Slower than :data:`REPLAN_TOLERANCE` and the plan no
    longer fitting, the plan is made again from every arm's step scaled by that ratio; faster
    by as much, and the budget having cut the plan, it is made again upwards. Either way the
    epoch stops and the arm starts afresh under ``new_plan``. It checks once per run; the
    outcome goes into the plan as ``check``."""

    def __init__(self, plan, costs, started: float) -> None:
        self.plan, self.costs, self.started = plan, list(costs), started
        self.armed = True
        self.arm: str | None = None
        self.new_plan = None
        self.record: dict | None = None
        self.marks: dict[int, float] = {}

    def watch(self, arm: str) -> Replanner | None:
        """This replanner for ``arm``'s first epoch, or ``None`` once it has checked."""
        if not self.armed:
            return None
        self.arm, self.marks, self.new_plan = arm, {}, None
        return self

    def disarm(self) -> None:
        self.armed = False

    def after_step(self, epoch: int, step: int) -> bool:
        a, b = REPLAN_STEPS
        if not self.armed or epoch != 0 or not a <= step <= b:
            return False
        self.marks[step] = clock()
        if step != b:
            return False
        times = sorted(self.marks[i] - self.marks[i - 1] for i in range(a + 1, b + 1)
                       if i in self.marks and i - 1 in self.marks)  # fmt: skip
        if not times:
            return False
        mid = len(times) // 2  # the median step: one burst of a neighbour does not decide
        median = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
        return self.check(median)

    def check(self, step_seconds: float) -> bool:
        """Judge the running step; ``True`` when the plan was made again (``new_plan``)."""
        self.armed = False
        plan, arm = self.plan, self.arm
        planned = next(c.step_seconds for c in self.costs if c.arm == arm)
        ratio = step_seconds / planned
        record = {"arm": arm, "steps": f"{REPLAN_STEPS[0] + 1}-{REPLAN_STEPS[1]} (median)",
                  "step_seconds": round(step_seconds, 4), "planned_step_seconds": round(planned, 4),
                  "ratio": round(ratio, 3)}  # fmt: skip
        scaled = (plan.epochs, plan.train_images) < (plan.epochs_unscaled, plan.train_images_unscaled)
        if ratio <= REPLAN_TOLERANCE and not (scaled and ratio < 1 / REPLAN_TOLERANCE):
            plan.check = dict(record, why="the steps ran as planned: the plan stands")
            return False
        slower = [dataclasses.replace(c, step_seconds=c.step_seconds * ratio) for c in self.costs]
        try:
            new = plan_mod.make_plan(slower, epochs=plan.epochs_unscaled,
                                     n_train=plan.train_images_unscaled,
                                     budget_minutes=plan.budget_minutes,
                                     spent_seconds=time.perf_counter() - self.started)  # fmt: skip
        except ValueError as e:  # not even two batches fit now: run the plan, say so
            plan.check = dict(record, why=f"{ratio:.2f}x the planned step, and no plan fits the "
                              f"budget any more ({e}): the plan stands")  # fmt: skip
            print(f"\n[{arm}] warning: {plan.check['why']}", file=sys.stdout, flush=True)
            return False
        if (new.epochs, new.train_images) == (plan.epochs, plan.train_images):
            plan.check = dict(record, why=f"{ratio:.2f}x the planned step; the plan still fits")
            return False
        direction = "up" if (new.epochs, new.train_images) > (plan.epochs, plan.train_images) else "down"
        record["why"] = (f"{ratio:.2f}x the planned step: made again from the steps that ran "
                         f"(every arm's measured step times {ratio:.2f}), {direction}: epochs "
                         f"{plan.epochs} -> {new.epochs}, training images {plan.train_images} -> "
                         f"{new.train_images}")  # fmt: skip
        record["direction"] = direction
        record["before"] = {"epochs": plan.epochs, "train_images": plan.train_images,
                            "estimated_total_seconds": round(plan.estimated_total_seconds, 1)}
        new.check, new.skipped = record, dict(plan.skipped)
        self.new_plan, self.record = new, record
        return True
