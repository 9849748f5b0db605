"""``python -m alexnet_course.devtools.gpu_probe probe ...``: the step of ``gpu-check`` that
runs a few training steps of lesson 03's AlexNet in a process of its own, for images/s and
the peak GPU memory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def probe(batch: int, size: int, steps: int, bf16: bool, channels_last: bool, impl: str) -> dict:
    """A few training steps of lesson 03's AlexNet: images/s and peak memory."""
    import resource

    import torch

    from alexnet_course.course import load_lesson_module
    from alexnet_course.device import pick_device, seed_everything

    device = pick_device()
    seed_everything(0)
    alexnet = load_lesson_module("03_torch_scratch", "alexnet", impl)
    model = alexnet.AlexNet(num_classes=10, norm="batch").to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cuda = device.type == "cuda"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2 if cuda else 1):  # warm-up: allocator, cuDNN's algorithm choice
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "batch": batch, "size": size, "steps": steps, "bf16": bf16,
        "channels_last": channels_last, "seconds": seconds,
        "images_per_second": batch * steps / seconds,
        "peak_memory_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_memory_reserved_bytes": torch.cuda.max_memory_reserved() if cuda else None,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }  # fmt: skip


def _internal_main(argv: list[str] | None = None) -> int:
    """``python -m alexnet_course.devtools.gpu_probe probe ...``: the step gpu-check runs in a process
    of its own."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m alexnet_course.devtools.gpu_probe probe")
    p.add_argument("command", choices=["probe"])
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--impl", default="solutions")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    res = probe(a.batch, a.size, a.steps, a.bf16, a.channels_last, a.impl)
    a.out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_internal_main())
