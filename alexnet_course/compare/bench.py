"""``alexnet-course bench``: the seed notebook's input pipeline against the course's, and
what each setting of the reference path contributes, in one run.

All variants train the same model (lesson 03's AlexNet, ``norm='batch'``) on the same
device, in interleaved rounds (a few steps of seed, of pipeline, of +channels_last, ...,
then seed again), so that a neighbour process that comes or goes slows every variant alike;
each variant's rate is its median step over all rounds. The variants:

* ``seed``: a ``DataLoader`` with 2 workers over PIL images (its first two steps of each
  round, one per starting worker, are warm-up), ``Resize``, ``ToTensor()``,
  ``Normalize(0.5, 0.5)``, fp32, contiguous: what the seed notebook did;
* ``pipeline``: uint8 batches kept on the device, resized and normalised there as whole
  batches (:class:`alexnet_course.data.torch_pipeline.TorchBatches`), fp32, contiguous;
* ``+channels_last``: the same, in ``channels_last`` memory format;
* ``+heap``: and glibc's malloc keeping freed memory in the heap
  (:func:`alexnet_course.compare.settings.keep_freed_memory`), on Linux with glibc. The
  setting cannot be undone in a process, so this variant and those after it run in a
  process of their own, which answers the parent's requests in turn: the steps stay
  interleaved, and the seed pipeline runs with glibc's defaults, as the notebook did;
* ``+nnpack``: and NNPACK's Winograd and FFT convolutions in the layers where a per-layer
  measurement shows them faster (:mod:`alexnet_course.compare.convs`), on a CPU that runs
  NNPACK; the layers and their times are reported;
* ``+fused_sgd``: and SGD's fused kernel (the same update in one pass over each parameter),
  where this torch has one for the device;
* ``+bf16``: the row above with bf16 autocast instead of NNPACK (which computes fp32 only),
  only where the hardware has bf16 units;
* ``+compile``: and ``torch.compile`` (with ``--compile``; its compile time is reported),
  on oneDNN's convolutions: torch.compile cannot trace NNPACK's;
* ``+threads=N``: on a CPU with more than one torch thread, the row above with one thread
  fewer: what ``compare``'s thread watch (:class:`alexnet_course.compare.settings.ThreadWatch`)
  switches to when another process takes a core. On an idle machine it is the slower.
  NNPACK's own thread pool keeps the thread count of its first call (PyTorch sizes it
  once), so its layers still run on every thread here, as they do in ``compare``.

Each variant is reported as images/second and as a ratio to ``seed``; the reference step
is the fastest variant, which is what ``compare`` would choose here.
"""

from __future__ import annotations

import time
from statistics import median

SEED_WORKERS = 2  # the seed notebook's DataLoader workers


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
                                       num_workers=SEED_WORKERS, drop_last=True)  # fmt: skip


class _Stepper:
    """One variant: how to build its model, and its batches. :meth:`round` builds the model
    and its optimiser (from the same start weights every time), starts its batches afresh
    (the seed's loader starts its workers), runs ``warmup`` untimed steps, then times each
    of ``steps`` training steps, data loading included, at the variant's thread count, and
    lets the model go: one variant's model, gradients and momentum are in memory at a time
    (every variant's at once took AlexNet's 0.7 GB each: 5 GB in all, #30). A compiled
    model is built once and kept (compiling it again each round would take minutes).

    A round runs its steps back to back, as training does: the seed's loader workers then
    make each timed step's batch while the model trains, on the same cores, as they did in
    the notebook. (Steps interleaved one at a time with other variants' would let them make
    it during those, for free.)"""

    def __init__(self, build, make_batches, device, v: dict, warmup: int = 1,
                 nnpack_layers: dict | None = None, keep: bool = False):  # fmt: skip
        self.build, self.make_batches, self.device, self.v = build, make_batches, device, v
        self.warmup = warmup
        self.nnpack_layers = nnpack_layers or {}  # what convs.pick_layers measured, if it ran
        self.kept = build() if keep else None

    def _step(self, model, opt, it) -> None:
        import torch

        x, y = next(it)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.v.get("bf16", False)):  # fmt: skip
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()

    def round(self, steps: int) -> dict:
        """The round's step times (``seconds``) and the thread count they ran at."""
        import torch

        threads, before = self.v.get("threads"), torch.get_num_threads()
        model = self.kept if self.kept is not None else self.build()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9,
                              fused=True if self.v.get("fused") else None)  # fmt: skip
        if threads:
            torch.set_num_threads(threads)  # the warm-up step absorbs the pool's resizing
        it = None
        try:
            it = iter(self.make_batches())
            for _ in range(self.warmup):
                self._step(model, opt, it)
            self._sync()
            seconds = []
            for _ in range(steps):
                t0 = time.perf_counter()
                self._step(model, opt, it)
                self._sync()
                seconds.append(time.perf_counter() - t0)
            return {"seconds": seconds, "threads": torch.get_num_threads()}
        finally:
            del it  # the seed's loader stops its workers
            if self.kept is not None:
                model.zero_grad(set_to_none=True)  # the kept model holds its weights only
            if threads:
                torch.set_num_threads(before)


def run_bench(data, *, impl: str, steps: int = 5, batch_size: int = 32, size: int = 224,
              rounds: int = 3, allow_bf16: bool = True, compile: bool = False,
              compile_backend: str = "inductor", echo=print) -> dict:  # fmt: skip
    """Measure every variant; returns images/second and the ratio to ``seed`` for each.

    In each of ``rounds`` rounds every variant in turn runs a warm-up step (the seed two,
    one per starting loader worker) and ``steps`` timed steps; its rate is ``batch_size``
    over its median step over all rounds."""
    import os

    import torch

    from alexnet_course.compare import convs
    from alexnet_course.compare import settings as st
    from alexnet_course.course import load_lesson_module
    from alexnet_course.device import is_glibc, pick_device

    device = pick_device()
    alexnet = load_lesson_module("03_torch_scratch", "alexnet", impl)
    n = (steps + SEED_WORKERS) * batch_size
    images, labels = data.train.images[:n], data.train.labels[:n]
    if len(labels) < n:
        raise ValueError(f"bench needs {n} training images ({steps} timed steps and "
                         f"{SEED_WORKERS} warm-up steps of batch {batch_size}), the data has "
                         f"{len(labels)}")  # fmt: skip
    bf16 = allow_bf16 and st.bf16_supported(device)
    heap = is_glibc()
    heap_from_env = [k for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ]
    threads = torch.get_num_threads()
    kw = dict(heap=heap, bf16=bf16, threads=threads if device.type == "cpu" else 1)
    args = (alexnet, data.num_classes, device, impl, images, labels, batch_size, size, steps,
            threads, compile_backend)  # fmt: skip
    kw["nnpack"] = device.type == "cpu" and convs.available()
    kw["fused"] = st.fused_sgd_available(device)
    local, rest = _variants(compile=compile, **kw)
    compile_failed = None
    try:
        steppers, child, compile_s = _start(local, rest, *args)
    except Exception as e:  # noqa: BLE001 - a compiler that fails is a finding, not the end
        if not compile:
            raise
        compile_failed = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        echo(f"torch.compile failed here ({compile_failed}): measuring without it")
        local, rest = _variants(compile=False, **kw)
        steppers, child, compile_s = _start(local, rest, *args)
    layers = {name: s.nnpack_layers for name, s in steppers.items() if s.nnpack_layers}
    layers |= child.nnpack_layers if child is not None else {}
    variants = local + rest
    seconds: dict[str, list[float]] = {name: [] for name, _ in variants}
    ran_threads: dict[str, int] = {}
    try:
        for _ in range(rounds):
            for name, _ in variants:
                r = steppers[name].round(steps) if name in steppers else child.round(name)
                seconds[name] += r["seconds"]
                ran_threads[name] = r["threads"]
    finally:
        if child is not None:
            child.close()
    ips = {name: batch_size / median(s) for name, s in seconds.items()}
    ratios = {name: ips[name] / ips["seed"] for name in ips}
    reference = max((k for k in ips if k != "seed"), key=ips.get)
    result = {"device": str(device), "steps": steps, "batch_size": batch_size, "size": size,
              "rounds": rounds, "statistic": "median step over the interleaved rounds",
              "threads": threads, "bf16_supported": st.bf16_supported(device),
              "variants": {name: {"pipeline": name != "seed", "channels_last": bool(v.get("cl")),
                                  "bf16": bool(v.get("bf16")), "compile": bool(v.get("compile")),
                                  "nnpack": convs.chosen(layers.get(name, {})),
                                  "fused_sgd": bool(v.get("fused")),
                                  "heap": name not in steppers, "threads": ran_threads[name]}
                           for name, v in variants},
              "images_per_s": ips, "ratio_to_seed": ratios, "reference": reference,
              "seed_images_per_s": ips["seed"], "reference_images_per_s": ips[reference],
              "ratio": ratios[reference], "compile_seconds": compile_s,
              "compile_backend": compile_backend if compile else None,
              "compile_failed": compile_failed,
              "step_seconds": {k: [round(t, 6) for t in s] for k, s in seconds.items()},
              "nnpack_layers": layers,
              "heap_setting": st.HEAP_SETTING if heap else None,
              "heap_in_environment": heap_from_env}  # fmt: skip
    echo(f"device {device}, {threads} torch threads: lesson 03's AlexNet (norm='batch'), "
         f"batch {batch_size} at {size} px, {rounds} interleaved rounds of {steps} steps of "
         "each variant; each variant's median step")
    echo(f"  {'variant':<16}{'images/s':>10}{'x seed':>9}{'x previous':>12}")
    prev = None
    for name, _ in variants:
        step_gain = "" if prev is None else f"{ips[name] / ips[prev]:.2f}x"
        echo(f"  {name:<16}{ips[name]:>10.1f}{ratios[name]:>8.2f}x{step_gain:>12}")
        prev = name
    if heap:
        echo(f"  (+heap and what follows it ran in a process of their own: {st.HEAP_SETTING})")
    else:
        echo("  (+heap not measured: the C library is not glibc)")
    if heap_from_env:
        echo(f"  (note: {', '.join(heap_from_env)} set in the environment: every variant, the "
             "seed's too, ran with some of +heap's setting)")
    for name, picked in layers.items():
        echo(f"  ({name}: NNPACK in {len(convs.chosen(picked))} of {len(picked)} layers; one "
             f"forward and backward of each with oneDNN / NNPACK / NNPACK with its weight "
             f"gradient: {convs.summary(picked)})")  # fmt: skip
    if not kw.get("nnpack"):
        echo("  (+nnpack not measured: NNPACK is not available here)")
    if not kw["fused"]:
        echo("  (+fused_sgd not measured: this torch has no fused SGD for the device)")
    if not bf16:
        echo(f"  (+bf16 not measured: {'not allowed' if not allow_bf16 else 'no bf16 units here'})")
    if compile_s is not None:
        echo(f"  (torch.compile took {compile_s:.0f} s before its first step)")
    if compile_failed:
        echo(f"  (+compile not measured: torch.compile failed here: {compile_failed})")
    if thread_row := next((n for n, v in variants if v.get("threads")), None):
        echo(f"  ({thread_row}: the row above with one thread fewer, what compare switches to "
             "when another process takes a core)")
    echo(f"  seed pipeline: {ips['seed']:.1f} images/s; reference pipeline ({reference}): "
         f"{ips[reference]:.1f} images/s; ratio: {ratios[reference]:.2f}x")
    return result


def _variants(*, heap: bool, bf16: bool, compile: bool, threads: int, nnpack: bool = False,
              fused: bool = False) -> tuple[list, list]:  # fmt: skip
    """The variants measured in this process and those measured in the heap process, in
    table order; the thread variant (with ``threads`` > 1) repeats the last with one fewer."""
    local = [("seed", {}), ("pipeline", {"cl": False}), ("+channels_last", {"cl": True})]
    rest = [("+heap", {"cl": True})] if heap else []
    if nnpack:
        rest.append(("+nnpack", {"cl": True, "nnpack": True}))
    if fused:
        rest.append(("+fused_sgd", {"cl": True, "nnpack": nnpack, "fused": True}))
    if bf16:
        rest.append(("+bf16", {"cl": True, "bf16": True, "fused": fused}))
    if compile:  # on top of the fastest precision: bf16 where it exists, else fp32
        rest.append(("+compile", {"cl": True, "bf16": bf16, "fused": fused, "compile": True}))
    if not heap:
        local, rest = local + rest, []
    if threads > 1:
        last = (rest or local)[-1][1]
        (rest or local).append((f"+threads={threads - 1}", dict(last, threads=threads - 1)))
    return local, rest


def _start(local: list, rest: list, alexnet, num_classes: int, device, impl: str, images, labels,
           batch_size: int, size: int, steps: int, threads: int, backend: str):  # fmt: skip
    """Build the local variants' steppers and start the heap process with the others;
    returns the steppers, the heap process (or None) and the compile time (or None)."""
    steppers, compile_s = {}, None
    for name, v in local:
        steppers[name], s = _build(alexnet, num_classes, device, name, v, images, labels,
                                   batch_size, size, backend)  # fmt: skip
        compile_s = s if s is not None else compile_s
    child = None
    if rest:
        child = _HeapProcess({"device": str(device), "impl": impl, "num_classes": num_classes,
                              "images": images, "labels": labels, "batch_size": batch_size,
                              "size": size, "steps": steps, "threads": threads,
                              "backend": backend, "variants": rest})  # fmt: skip
        compile_s = child.compile_s if child.compile_s is not None else compile_s
    return steppers, child, compile_s


def _build(alexnet, num_classes: int, device, name: str, v: dict, images, labels,
           batch_size: int, size: int, backend: str = "inductor"):  # fmt: skip
    """One variant's stepper (its model seeded alike, built anew each round), after a first
    round of no timed step (which compiles it when asked, and builds oneDNN's kernels);
    returns it and the compile time."""
    import torch

    from alexnet_course.compare import convs
    from alexnet_course.device import seed_everything

    def plain():
        seed_everything(0)
        m = alexnet.AlexNet(num_classes=num_classes, norm="batch").to(device)
        return m.to(memory_format=torch.channels_last) if v.get("cl") else m

    picked = {}
    if v.get("nnpack"):  # the layers NNPACK computes faster, at this batch and input size
        from alexnet_course.compare.settings import probe_batch

        x, _ = probe_batch(batch_size, size, device, channels_last=v.get("cl", False))
        before = torch.get_num_threads()
        torch.set_num_threads(v.get("threads") or before)  # measured as the variant runs
        try:
            picked = convs.pick_layers(plain(), x)
        finally:
            torch.set_num_threads(before)

    def build():
        m = plain()
        if picked:
            convs.apply(m, picked)
        return torch.compile(m, backend=backend) if v.get("compile") else m

    t0 = time.perf_counter()
    if name == "seed":
        def make_batches():
            return _seed_loader(images, labels, batch_size, size)
    else:
        def make_batches():
            return _ref_batches(images, labels, batch_size, size, device, v.get("cl", False))
    # the seed's first step waits for one worker to start, its second for the other
    stepper = _Stepper(build, make_batches, device, v, warmup=SEED_WORKERS if name == "seed" else 1,
                       nnpack_layers=picked, keep=bool(v.get("compile")))  # fmt: skip
    stepper.round(0)
    return stepper, (time.perf_counter() - t0 if v.get("compile") else None)


def _heap_worker(conn, cfg: dict) -> None:
    """The variants that keep freed memory in the heap, in a process of their own: the setting
    is one-way (glibc cannot go back to its adaptive defaults), so the parent, which measures
    the seed pipeline, never has it. Answers one round per request, so that the rounds stay
    interleaved with the parent's."""
    try:
        from alexnet_course.compare.settings import keep_freed_memory

        keep_freed_memory()
        import torch

        from alexnet_course.course import load_lesson_module

        torch.set_num_threads(cfg["threads"])
        device = torch.device(cfg["device"])
        alexnet = load_lesson_module("03_torch_scratch", "alexnet", cfg["impl"])
        args = (cfg["images"], cfg["labels"], cfg["batch_size"], cfg["size"], cfg["backend"])
        steppers, compile_s = {}, None
        for name, v in cfg["variants"]:
            steppers[name], s = _build(alexnet, cfg["num_classes"], device, name, v, *args)
            compile_s = s if s is not None else compile_s
        layers = {name: s.nnpack_layers for name, s in steppers.items() if s.nnpack_layers}
        conn.send(("ready", (compile_s, layers)))
        while (name := conn.recv()) is not None:
            conn.send(("ok", steppers[name].round(cfg["steps"])))
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
        self.compile_s, self.nnpack_layers = self._answer()

    def _answer(self):
        try:
            kind, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"bench's +heap process died (exit code {self.proc.exitcode})") from None
        if kind == "error":
            raise RuntimeError(f"bench's +heap process failed: {value}")
        return value

    def round(self, name: str) -> dict:
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
