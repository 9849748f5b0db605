"""``alexnet-course bench``: the seed notebook's input pipeline against the course's, and
what each setting of the reference path contributes, in one run.

All variants train the same model (lesson 03's AlexNet, ``norm='batch'``) on the same
device for the same number of steps, measured in interleaved rounds (each keeps its best
round, so a noisy neighbour hits them alike):

* ``seed``: a ``DataLoader`` with 2 workers over PIL images, ``Resize``, ``ToTensor()``,
  ``Normalize(0.5, 0.5)``, fp32, contiguous: what the seed notebook did;
* ``pipeline``: uint8 batches kept on the device, resized and normalised there as whole
  batches (:class:`alexnet_course.data.torch_pipeline.TorchBatches`), fp32, contiguous;
* ``+channels_last``: the same, in ``channels_last`` memory format;
* ``+heap``: and glibc's malloc keeping freed memory in the heap
  (:func:`alexnet_course.compare.settings.keep_freed_memory`), on Linux with glibc. The
  setting cannot be undone in a process, so this variant and those after it run in a
  process of their own, which answers the parent's requests in turn: the rounds stay
  interleaved, and the seed pipeline runs with glibc's defaults, as the notebook did;
* ``+bf16``: and bf16 autocast, only where the hardware has bf16 units;
* ``+compile``: and ``torch.compile`` (with ``--compile``; its compile time is reported).

Each variant is reported as images/second and as a ratio to ``seed``; the reference step
is the fastest variant, which is what ``compare`` would choose here.
"""

from __future__ import annotations

import time


def _seed_loader(images, labels, batch_size: int, size: int):
    import torch
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(),
                             transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])  # fmt: skip

    class PILDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i])), int(labels[i])

    return torch.utils.data.DataLoader(PILDataset(), batch_size=batch_size, shuffle=True,
                                       num_workers=2, drop_last=True)  # fmt: skip


def _time_steps(model, batches, steps: int, device, bf16: bool) -> float:
    """Seconds for ``steps`` training steps (after one warm-up step), data loading included."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    it = iter(batches)

    def step():
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run_bench(data, *, impl: str, steps: int = 5, batch_size: int = 32, size: int = 224,
              rounds: int = 2, allow_bf16: bool = True, compile: bool = False,
              echo=print) -> dict:  # fmt: skip
    """Measure every variant; returns images/second and the ratio to ``seed`` for each."""
    import os

    from alexnet_course.compare.settings import HEAP_SETTING, bf16_supported, is_glibc
    from alexnet_course.device import pick_device
    from alexnet_course.grading.learner import load_lesson_module

    device = pick_device()
    alexnet = load_lesson_module("03_torch_scratch", "alexnet", impl)
    n = (steps + 1) * batch_size
    images, labels = data.train.images[:n], data.train.labels[:n]
    if len(labels) < n:
        raise ValueError(f"bench needs {n} training images, the data has {len(labels)}")
    bf16 = allow_bf16 and bf16_supported(device)
    heap = is_glibc()
    heap_from_env = [k for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ]
    local = [("seed", {}), ("pipeline", {"cl": False}), ("+channels_last", {"cl": True})]
    rest = [("+heap", {"cl": True})] if heap else []
    if bf16:
        rest.append(("+bf16", {"cl": True, "bf16": True}))
    if compile:
        rest.append(("+compile", {"cl": True, "bf16": bf16, "compile": True}))
    if not heap:
        local, rest = local + rest, []
    variants = local + rest
    args = (images, labels, batch_size, size)
    models, compile_s = {}, None
    for name, v in local:
        models[name], s = _build(alexnet, data.num_classes, device, v, *args)
        compile_s = s if s is not None else compile_s
    child = None
    if rest:
        child = _HeapProcess({"device": str(device), "impl": impl, "num_classes": data.num_classes,
                              "images": images, "labels": labels, "batch_size": batch_size,
                              "size": size, "steps": steps, "variants": rest})  # fmt: skip
        compile_s = child.compile_s if child.compile_s is not None else compile_s
    best: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for name, v in variants:
                if name in models:
                    t = _time_variant(models[name], name, v, *args, steps, device)
                else:
                    t = child.time(name)
                best[name] = min(best.get(name, float("inf")), t)
    finally:
        if child is not None:
            child.close()
    ips = {name: steps * batch_size / t for name, t in best.items()}
    ratios = {name: ips[name] / ips["seed"] for name in ips}
    reference = max((k for k in ips if k != "seed"), key=ips.get)
    result = {"device": str(device), "steps": steps, "batch_size": batch_size, "size": size,
              "rounds": rounds, "bf16_supported": bf16_supported(device),
              "images_per_s": ips, "ratio_to_seed": ratios, "reference": reference,
              "seed_images_per_s": ips["seed"], "reference_images_per_s": ips[reference],
              "ratio": ratios[reference], "compile_seconds": compile_s,
              "heap_setting": HEAP_SETTING if heap else None,
              "heap_in_environment": heap_from_env}  # fmt: skip
    echo(f"device {device}, {steps} training steps of batch {batch_size} at {size} px, "
         f"lesson 03's AlexNet (norm='batch'), best of {rounds} interleaved rounds")
    echo(f"  {'variant':<16}{'images/s':>10}{'x seed':>9}{'x previous':>12}")
    prev = None
    for name, _ in variants:
        step_gain = "" if prev is None else f"{ips[name] / ips[prev]:.2f}x"
        echo(f"  {name:<16}{ips[name]:>10.1f}{ratios[name]:>8.2f}x{step_gain:>12}")
        prev = name
    if heap:
        echo(f"  (+heap and what follows it ran in a process of their own: {HEAP_SETTING})")
    else:
        echo("  (+heap not measured: the C library is not glibc)")
    if heap_from_env:
        echo(f"  (note: {', '.join(heap_from_env)} set in the environment: every variant, the "
             "seed's too, ran with some of +heap's setting)")
    if not bf16:
        echo(f"  (+bf16 not measured: {'not allowed' if not allow_bf16 else 'no bf16 units here'})")
    if compile_s is not None:
        echo(f"  (torch.compile took {compile_s:.0f} s before its first step)")
    echo(f"  seed pipeline: {ips['seed']:.1f} images/s; reference pipeline ({reference}): "
         f"{ips[reference]:.1f} images/s; ratio: {ratios[reference]:.2f}x")
    return result


def _build(alexnet, num_classes: int, device, v: dict, images, labels, batch_size: int,
           size: int):  # fmt: skip
    """One variant's model (seeded alike), compiled when asked; returns it and the compile time."""
    import torch

    from alexnet_course.device import seed_everything

    seed_everything(0)
    m = alexnet.AlexNet(num_classes=num_classes, norm="batch").to(device)
    if v.get("cl"):
        m = m.to(memory_format=torch.channels_last)
    if not v.get("compile"):
        return m, None
    t0 = time.perf_counter()
    m = torch.compile(m)
    _time_steps(m, _ref_batches(images, labels, batch_size, size, device, True), 0, device,
                bf16=v.get("bf16", False))  # compiles  # fmt: skip
    return m, time.perf_counter() - t0


def _time_variant(model, name: str, v: dict, images, labels, batch_size: int, size: int,
                  steps: int, device) -> float:  # fmt: skip
    if name == "seed":
        batches = _seed_loader(images, labels, batch_size, size)
    else:
        batches = _ref_batches(images, labels, batch_size, size, device, v.get("cl", False))
    return _time_steps(model, batches, steps, device, bf16=v.get("bf16", False))


def _heap_worker(conn, cfg: dict) -> None:
    """The variants that keep freed memory in the heap, in a process of their own: the setting
    is one-way (glibc cannot go back to its adaptive defaults), so the parent, which measures
    the seed pipeline, never has it. Answers one timing per request, so that the rounds stay
    interleaved with the parent's."""
    try:
        from alexnet_course.compare.settings import keep_freed_memory

        keep_freed_memory()
        import torch

        from alexnet_course.grading.learner import load_lesson_module

        device = torch.device(cfg["device"])
        alexnet = load_lesson_module("03_torch_scratch", "alexnet", cfg["impl"])
        args = (cfg["images"], cfg["labels"], cfg["batch_size"], cfg["size"])
        models, compile_s = {}, None
        for name, v in cfg["variants"]:
            models[name], s = _build(alexnet, cfg["num_classes"], device, v, *args)
            compile_s = s if s is not None else compile_s
        conn.send(("ready", compile_s))
        variants = dict(cfg["variants"])
        while (name := conn.recv()) is not None:
            conn.send(("ok", _time_variant(models[name], name, variants[name], *args,
                                           cfg["steps"], device)))  # fmt: skip
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))


class _HeapProcess:
    """The parent's handle on :func:`_heap_worker`."""

    def __init__(self, cfg: dict):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_heap_worker, args=(child, cfg), daemon=True)
        self.proc.start()
        child.close()
        self.compile_s = self._answer()

    def _answer(self):
        try:
            kind, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"bench's +heap process died (exit code {self.proc.exitcode})") from None
        if kind == "error":
            raise RuntimeError(f"bench's +heap process failed: {value}")
        return value

    def time(self, name: str) -> float:
        self.conn.send(name)
        return self._answer()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()


def _ref_batches(images, labels, batch_size: int, size: int, device, cl: bool):
    """The course's pipeline: uint8 batches on the device, resized and normalised there."""
    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD
    from alexnet_course.data.cifar10 import Split
    from alexnet_course.data.torch_pipeline import TorchBatches

    return TorchBatches(Split(images, labels), batch_size=batch_size, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                        size=size, train=True, device=device, channels_last=cl,
                        drop_last=True)  # fmt: skip
