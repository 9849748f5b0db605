"""How long a comparison will take here, and how to fit it into ``--budget-minutes``.

The estimate comes from training steps measured on this machine before the first arm
starts (:mod:`alexnet_course.compare.settings` for the PyTorch arms, a few Keras steps for
the Keras arms). With a budget, every arm gets the same scaling, so the arms stay fair:
first fewer epochs, and when even one epoch of every arm does not fit, the same share of
the training images in that one epoch. The plan (the measured rates, the estimate, the
scaling) goes into every arm's ``results.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

EVAL_COST = 0.35  # an evaluation batch costs about this share of a training step (forward only)
SAFETY = 0.9  # plan to use this share of the budget: measurements on a shared machine wobble
REPORT_SECONDS = 20.0  # figures and the report after the last arm


@dataclass
class ArmCost:
    arm: str
    step_seconds: float  # one training step of the profile's batch
    train_steps: int  # per epoch
    eval_batches_per_epoch: int
    eval_batches_final: int
    batch_size: int = 128
    setup_seconds: float = 0.0  # once per arm, whatever its epochs (torch.compile)

    def seconds(self, epochs: int, fraction: float = 1.0) -> float:
        train = epochs * math.ceil(self.train_steps * fraction) * self.step_seconds
        evals = (epochs * self.eval_batches_per_epoch + self.eval_batches_final) * self.step_seconds
        return self.setup_seconds + train + EVAL_COST * evals


@dataclass
class Plan:
    epochs: int
    train_images: int
    epochs_unscaled: int
    train_images_unscaled: int
    estimated_seconds: dict[str, float]
    estimated_total_seconds: float
    estimated_unscaled_seconds: float
    budget_minutes: float | None = None
    scale: str = "none"
    measured_step_seconds: dict[str, float] = field(default_factory=dict)
    # the first arm's running steps against the plan's (callbacks.Replanner), where checked
    check: dict | None = None
    # arms that cannot run here (no weights, no TensorFlow), with why: planned for no time
    skipped: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict:
        return asdict(self)


def arm_costs(arms: list[str], step_seconds: dict[str, float], *, n_train: int, n_val: int,
              n_test: int, batch_size: int, keras_train_eval: int,
              setup_seconds: dict[str, float] | None = None) -> list[ArmCost]:  # fmt: skip
    """What each arm costs per epoch, from a measured step time per arm (and once, its
    ``setup_seconds``)."""
    b = batch_size
    costs = []
    for arm in arms:
        per_epoch = math.ceil(n_val / b)  # validation
        final = math.ceil(n_test / b)  # the test set
        if arm.startswith("keras"):  # training accuracy subset, and a second val/test pass
            per_epoch += math.ceil(keras_train_eval / b) + math.ceil(n_val / b)
            final += math.ceil(n_test / b)
        costs.append(ArmCost(arm, step_seconds[arm], math.ceil(n_train / b), per_epoch, final, b,
                             (setup_seconds or {}).get(arm, 0.0)))  # fmt: skip
    return costs


def make_plan(costs: list[ArmCost], *, epochs: int, n_train: int, budget_minutes: float | None,
              spent_seconds: float = 0.0, explain: bool = True) -> Plan:  # fmt: skip
    """The epochs and training images every arm gets (the same for all), and the estimate."""
    unscaled = {c.arm: c.seconds(epochs) for c in costs}
    total = sum(unscaled.values())
    plan = Plan(epochs, n_train, epochs, n_train, unscaled, total, total, budget_minutes,
                measured_step_seconds={c.arm: round(c.step_seconds, 4) for c in costs})  # fmt: skip
    if budget_minutes is None or not costs:
        return plan
    available = budget_minutes * 60 * SAFETY - spent_seconds - REPORT_SECONDS
    if total <= available:
        plan.scale = "none: the whole profile fits the budget"
        return plan
    fitting = [e for e in range(epochs, 0, -1) if sum(c.seconds(e) for c in costs) <= available]
    if fitting:
        plan.epochs = fitting[0]
        plan.scale = f"epochs {epochs} -> {plan.epochs} for every arm"
    else:  # one epoch of every arm on the same share of the training images
        fixed = sum(c.seconds(1) - c.train_steps * c.step_seconds for c in costs)  # evals, setup
        per_image_epoch = sum(c.train_steps * c.step_seconds for c in costs)
        fraction = (available - fixed) / per_image_epoch
        min_images = 2 * math.ceil(n_train / max(1, costs[0].train_steps))  # two batches
        if fraction * n_train < min_images:
            if not explain:
                raise ValueError("too small")
            raise ValueError(too_small(costs, epochs=epochs, n_train=n_train,
                                       budget_minutes=budget_minutes,
                                       spent_seconds=spent_seconds))  # fmt: skip
        plan.epochs = 1  # whole batches: the estimate rounds partial ones up
        b = costs[0].batch_size
        plan.train_images = min(n_train, max(b, math.floor(n_train * fraction / b) * b))
        plan.scale = (f"epochs {epochs} -> 1 and training images {n_train} -> "
                      f"{plan.train_images} for every arm")
    frac = plan.train_images / n_train
    plan.estimated_seconds = {c.arm: c.seconds(plan.epochs, frac) for c in costs}
    plan.estimated_total_seconds = sum(plan.estimated_seconds.values())
    return plan


def minimum_minutes(costs: list[ArmCost], n_train: int, spent_seconds: float = 0.0) -> float:
    """The smallest budget ``costs``' arms fit: two batches of each, then the evaluations."""
    if not costs:
        return spent_seconds / 60
    min_images = 2 * math.ceil(n_train / max(1, costs[0].train_steps))
    need = sum(c.seconds(1, min_images / n_train) for c in costs) + REPORT_SECONDS
    return (need / SAFETY + spent_seconds) / 60


def too_small(costs: list[ArmCost], *, epochs: int, n_train: int, budget_minutes: float,
              spent_seconds: float = 0.0) -> str:  # fmt: skip
    """Why ``budget_minutes`` is refused, with what would fit: the smallest budget for these
    arms, and the largest set of arms (cheapest first) that fits this one."""
    need = minimum_minutes(costs, n_train, spent_seconds)
    text = (f"--budget-minutes {budget_minutes:g} is too small on this machine: even two "
            f"batches of every arm need about {need:.1f} minutes (measured steps: "
            + ", ".join(f"{c.arm} {c.step_seconds:.2f} s" for c in costs) + ")")  # fmt: skip
    fits = []
    for c in sorted(costs, key=lambda c: c.seconds(1)):
        if minimum_minutes([*fits, c], n_train, spent_seconds) <= budget_minutes:
            fits.append(c)
    text += f". Give --budget-minutes {math.ceil(need)} or more for these arms"
    if fits:
        try:
            p = make_plan(fits, epochs=epochs, n_train=n_train, budget_minutes=budget_minutes,
                          spent_seconds=spent_seconds, explain=False)  # fmt: skip
            text += (f", or keep {budget_minutes:g} with --arms {','.join(c.arm for c in fits)} "
                     f"({p.epochs} epoch(s) of {p.train_images} training images)")
        except ValueError:
            pass
    return text


def describe(plan: Plan) -> str:
    lines = ["expected time on this machine (from measured steps):"]
    for arm, s in plan.estimated_seconds.items():
        lines.append(f"  {arm:<18} ~{s / 60:.1f} min")
    lines.append(f"  {'whole run':<18} ~{plan.estimated_total_seconds / 60:.1f} min "
                 f"({plan.epochs} epoch(s) of {plan.train_images} training images per arm)")
    if plan.budget_minutes is not None:
        lines.append(f"  budget {plan.budget_minutes:g} min: {plan.scale} (unscaled: "
                     f"~{plan.estimated_unscaled_seconds / 60:.1f} min)")  # fmt: skip
    return "\n".join(lines)


def keras_step_seconds(model, optimizer, make_train_step, x, y, steps: int = 2) -> float:
    """Seconds of one training step of lesson 04's step function (after one warm-up)."""
    step = make_train_step(model, optimizer)
    step(x, y)
    best = math.inf
    for _ in range(steps):
        t0 = time.perf_counter()
        float(step(x, y))
        best = min(best, time.perf_counter() - t0)
    return best
