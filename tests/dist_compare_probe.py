"""``alexnet-course compare`` as torchrun starts it, with the smoke profile keeping its
per-epoch checkpoints (as the cpu and gpu profiles do) and, with ``INTERRUPT_AT_EVAL=N``, a
Ctrl-C on every rank at the N-th evaluation. Run by tests/test_distributed.py:

    torchrun --standalone --nproc-per-node 2 tests/dist_compare_probe.py compare ...
"""

from __future__ import annotations

import dataclasses
import os
import sys

from alexnet_course.cli import main
from alexnet_course.compare import profiles
from alexnet_course.course import load_lesson_module

profiles.PROFILES["smoke"] = dataclasses.replace(profiles.PROFILES["smoke"], checkpoints=True,
                                                 train_limit=64)  # 2 global batches an epoch
stop_at = int(os.environ.get("INTERRUPT_AT_EVAL", "0"))
if stop_at:
    train = load_lesson_module("03_torch_scratch", "train", "solutions")
    real_evaluate, calls = train.evaluate, []

    from alexnet_course.data.torch_pipeline import TorchBatches

    def evaluate(model, loader, *args, **kwargs):
        if isinstance(loader, TorchBatches):  # not the preflight's tiny check
            calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real_evaluate(model, loader, *args, **kwargs)

    train.evaluate = evaluate

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
