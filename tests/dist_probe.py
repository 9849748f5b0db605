"""Five training steps of lesson 03's AlexNet (BatchNorm, dropout off, no augmentation) with
the comparison's distributed pieces, then an evaluation; run by tests/test_distributed.py
as one process and under torchrun. Rank 0 writes the weights and the evaluation counts.

    python tests/dist_probe.py DATA_ROOT OUT            # one process
    torchrun --nproc-per-node 2 tests/dist_probe.py DATA_ROOT OUT
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import torch
from torch import nn

from alexnet_course.compare import distributed as dd
from alexnet_course.compare.lesson_code import LessonCode
from alexnet_course.compare.models import scratch_torch_alexnet
from alexnet_course.compare.profiles import PROFILES
from alexnet_course.course import load_lesson_module
from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from alexnet_course.data.torch_pipeline import TorchBatches

STEPS, GLOBAL_BATCH, SIZE = 5, 32, 67


def main(root: str, out: str) -> None:
    torch.set_num_threads(1)
    d = dd.setup("cpu")
    train = load_lesson_module("03_torch_scratch", "train", "solutions")
    code = LessonCode("solutions")
    data = load_cifar10(root, val_size=100, seed=0, split=code.split)
    torch.manual_seed(0)
    model = scratch_torch_alexnet(PROFILES["smoke"], data.num_classes, code)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    if d.on:
        model = dd.sync_batchnorm(model, "cpu")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    net, model = model, dd.wrap(d, model, torch.device("cpu"))
    kw = dict(batch_size=GLOBAL_BATCH, mean=CIFAR10_MEAN, std=CIFAR10_STD, size=SIZE, seed=0,
              rank=d.rank, world_size=d.world_size)  # fmt: skip
    tr = TorchBatches(data.train, shuffle=True, **kw)  # shuffled, not augmented
    va = TorchBatches(data.val, **kw)
    loss, acc = train.train_one_epoch(model, itertools.islice(tr, STEPS), opt)
    seen = sum(len(y) for _, y in itertools.islice(tr, STEPS))
    loss, acc = dd.combine_epoch(d, loss, acc, seen)
    ev = dd.combine(d, train.evaluate(net, va, data.num_classes), va.shard_size())
    if d.main:
        Path(out).mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().clone() for k, v in net.state_dict().items()},
                   Path(out) / "state.pt")  # fmt: skip
        (Path(out) / "eval.json").write_text(json.dumps({
            "world_size": d.world_size, "train_loss": loss, "train_accuracy": acc,
            "val_loss": ev.loss, "confusion_matrix": [[int(c) for c in r]
                                                      for r in ev.confusion_matrix]}))  # fmt: skip
    dd.teardown(d)


if __name__ == "__main__":
    main(*sys.argv[1:3])
