"""A comparison run's state, in one frozen object handed down (torchvision's references
keep theirs in ``args``; here nothing is added to the argparse namespace after parsing).

* :class:`Options`: what the user asked for, copied once from the command line;
* :class:`RunContext`: what the run has decided, step by step (the data, the lessons' code,
  the measured settings, the plan); each step makes a new context with
  :func:`dataclasses.replace`, so a function's inputs are the context it was handed.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet_course.compare.lesson_code import LessonCode
from alexnet_course.compare.profiles import Profile


@dataclass(frozen=True)
class Options:
    """The command line of ``alexnet-course compare``, as parsed."""

    profile: str | None
    arms: tuple[str, ...]
    out: Path
    impl: str | None
    seed: int
    epochs: int | None
    no_download: bool
    data_label: str | None
    data_dir: Path | None
    budget_minutes: float | None
    resume: bool
    no_bf16: bool
    no_compile: bool
    no_nnpack: bool
    remeasure: bool = False
    argv: tuple[str, ...] = ()  # the command line, for the provenance

    @classmethod
    def from_args(cls, args: argparse.Namespace, argv: list[str] | None = None) -> Options:
        arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
        return cls(profile=args.profile, arms=arms, out=args.out, impl=args.impl,
                   seed=args.seed, epochs=args.epochs, no_download=args.no_download,
                   data_label=args.data_label, data_dir=getattr(args, "data_dir", None),
                   budget_minutes=args.budget_minutes, resume=args.resume,
                   no_bf16=args.no_bf16, no_compile=args.no_compile,
                   no_nnpack=args.no_nnpack, remeasure=args.remeasure,
                   argv=tuple(argv or ()))  # fmt: skip


@dataclass(frozen=True)
class RunContext:
    """Everything an arm needs, decided before it runs."""

    options: Options
    profile: Profile
    device: Any  # torch.device
    dist: Any  # compare.distributed.Dist
    code: LessonCode
    started: float  # time.perf_counter() at the start of the run
    allocator: str = "the C library's defaults"
    data: Any = None  # data.CIFAR10: what the arms train on (a plan may take fewer images)
    all_data: Any = None  # data.CIFAR10 before the plan's cut
    normalisation: dict = field(default_factory=dict)  # lesson 01's, and lesson 02's
    pipeline: dict = field(default_factory=dict)  # fast paths or the lesson's own functions
    torch_settings: dict | None = None
    keras_settings: dict | None = None
    plan: Any = None  # compare.plan.Plan
    costs: tuple = ()  # compare.plan.ArmCost, what the plan was made from

    def but(self, **changes) -> RunContext:
        """A new context with ``changes``."""
        return dataclasses.replace(self, **changes)

    @property
    def epochs(self) -> int:
        if self.plan is not None:
            return self.plan.epochs
        return self.options.epochs or self.profile.epochs
