"""Pick the fastest correct training settings for this machine, by measurement.

The reference path used to turn bf16 autocast on for every CPU. On a CPU without bf16
matrix units (no AVX512-BF16 or AMX) oneDNN emulates bf16, and one training step of lesson
03's AlexNet ran 54x slower than in fp32 on such a machine. So nothing is assumed:

* bf16 autocast is a candidate only where the hardware supports it
  (:func:`bf16_supported`), and is used only when a measurement on this machine shows it
  faster than fp32;
* ``channels_last`` is used only when a measurement shows it faster;
* on a CPU, NNPACK's Winograd and FFT convolutions (:mod:`alexnet_course.compare.convs`)
  are candidates for the layers where a per-layer measurement shows them faster, and are
  used only when the whole training step then measures faster too; each PyTorch arm then
  picks its own layers the same way (its layers and sizes differ);
* SGD's fused kernel is used where its step measures faster (:func:`measure_fused_sgd`);
* ``torch.compile`` is measured on top of that pick (:func:`measure_compile`) and used only
  when it is faster and compiles in reasonable time;
* the measurement trains the very model the arm trains (same batch size and input size)
  for a few steps, candidates interleaved so that a noisy neighbour hits them alike.

Every choice, the candidates' measured step times and the reason are returned as a dict
that goes into each arm's ``results.json``.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from statistics import median

from alexnet_course.device import is_glibc, trim_malloc

MIN_GAIN = 1.05  # a candidate must be at least 5% faster than the plain setting to be used
LOAD_CHANGE = 0.2  # ThreadWatch probes at once when the step time moves this much


def bf16_supported(device) -> bool:
    """Whether ``device`` computes bf16 in hardware (CUDA's check; oneDNN's on a CPU)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            from torch.backends import mkldnn

            return bool(mkldnn.is_available()) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


SGD_ARGS = {"momentum": 0.9, "weight_decay": 5e-4}  # the scratch arms' optimizer (lr aside)


def fused_sgd_available(device) -> bool:
    """Whether this torch has a fused SGD kernel for ``device`` (CUDA, and CPUs since 2.4)."""
    import torch

    try:
        p = torch.zeros(2, device=device, requires_grad=True)
        p.grad = torch.ones_like(p)
        torch.optim.SGD([p], lr=0.1, fused=True, **SGD_ARGS).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def use_fused_sgd(opt) -> bool:
    """Switch ``opt``, a ``torch.optim.SGD`` however it was built (the lesson's function
    builds the pretrained arms'), to the fused kernel: the same update, in one pass over each
    parameter. Returns whether it did (not for another optimizer, nor a differentiable one)."""
    import torch

    if type(opt) is not torch.optim.SGD or any(g.get("differentiable") for g in opt.param_groups):
        return False
    for group in (*opt.param_groups, opt.defaults):
        group["fused"], group["foreach"] = True, False
    opt._step_supports_amp_scaling = True  # what SGD(fused=True) sets
    return True


def measure_fused_sgd(model, device, *, steps: int = 3, rounds: int = 3) -> dict:
    """Time ``torch.optim.SGD``'s step on ``model``'s parameters (the scratch arms'
    momentum and weight decay), as PyTorch runs it by default and fused, in turn; the fused
    kernel is used where it is :data:`MIN_GAIN` faster. By default PyTorch updates a CPU's
    parameters with a loop of separate operations, each a pass over AlexNet's 60 million
    weights (and their gradients and momentum); the fused kernel makes one. Returns
    ``{"fused_sgd": bool, "sgd_step_ms": {"default": ms, "fused": ms}}``."""
    import torch

    if not fused_sgd_available(device):
        return {"fused_sgd": False, "sgd_step_ms": {}}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    opts = {"default": torch.optim.SGD(params, lr=1e-4, **SGD_ARGS),
            "fused": torch.optim.SGD(params, lr=1e-4, fused=True, **SGD_ARGS)}  # fmt: skip
    times = {k: [] for k in opts}
    opts["default"].step()  # momentum buffers, which the fused one shares (the values do not
    for p in params:  # change a step's time, and a second set is 0.2 GB more, #30)
        opts["fused"].state[p]["momentum_buffer"] = opts["default"].state[p]["momentum_buffer"]
    for _ in range(rounds):
        for name, opt in opts.items():
            for _ in range(steps):
                t0 = time.perf_counter()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
    ms = {k: round(1e3 * median(v), 3) for k, v in times.items()}
    return {"fused_sgd": ms["fused"] * MIN_GAIN <= ms["default"], "sgd_step_ms": ms}


def _step_seconds(model, x, y, *, bf16: bool, channels_last: bool, steps: int,
                  fused_sgd: bool = False) -> list[float]:  # fmt: skip
    """Seconds per training step (SGD, cross-entropy) of ``model`` on one batch."""
    import torch

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, fused=fused_sgd or None, **SGD_ARGS)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    opt.zero_grad(set_to_none=True)  # each candidate's model keeps no gradients between turns
    return times


def probe_batch(batch_size: int, size: int, device, channels_last: bool = False):
    """The random batch every measurement trains on (seeded: the same for every candidate),
    its images in ``channels_last`` memory format if asked."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _best_seconds(runs: dict[str, tuple], x, y, measure: Callable, *, steps: int,
                  rounds: int) -> dict[str, float]:  # fmt: skip
    """Each run's best step time: ``runs`` maps a name to ``(model, bf16, channels_last)``;
    they are measured in turn, ``rounds`` times, so that a noisy neighbour hits them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, (model, bf16, cl) in runs.items():
            t = min(measure(model, x, y, bf16=bf16, channels_last=cl, steps=steps))
            best[name] = min(best[name], t)
    return best


def measure_settings(make_model: Callable, device, *, batch_size: int, size: int,
                     allow_bf16: bool = True, allow_nnpack: bool = True,
                     allow_fused_sgd: bool = True, steps: int = 2, rounds: int = 2,
                     measure: Callable | None = None,
                     pick_convs: Callable | None = None) -> dict:  # fmt: skip
    """Measure the candidate settings and return the fastest correct one.

    Args:
        make_model: builds a fresh model (on the CPU) to measure; the same for every candidate.
        device (torch.device): where training will run.
        batch_size: the batch size training will use.
        size: the input size, in pixels, training will use.
        allow_bf16: the profile permits bf16 autocast (it is still measured, never assumed).
        allow_nnpack: NNPACK convolutions may be measured (on a CPU).
        allow_fused_sgd: the fused SGD kernel may be measured (:func:`measure_fused_sgd`).
        steps: timed steps per candidate and round (after one untimed warm-up step).
        rounds: candidates are measured in turn this many times; each keeps its best time.
        measure: replaces :func:`_step_seconds` (tests).
        pick_convs: replaces :func:`alexnet_course.compare.convs.pick_layers` (tests).

    Returns:
        ``{"autocast": "bf16" | None, "channels_last": bool, "nnpack": [layer names],
        "bf16_supported": bool, "step_seconds": {candidate: seconds},
        "nnpack_layers": {layer: its measured times}, "reason": str}``.
    """
    import torch

    from alexnet_course.compare import convs
    from alexnet_course.compare.models import share_linear_weights

    sgd = (measure_fused_sgd(make_model().to(device), device) if allow_fused_sgd
           else {"fused_sgd": False, "sgd_step_ms": {}})  # fmt: skip
    measure = measure or functools.partial(_step_seconds, fused_sgd=sgd["fused_sgd"])
    supported = bf16_supported(device)
    candidates = [("fp32", False, False), ("fp32+channels_last", False, True)]
    if allow_bf16 and supported:
        candidates += [("bf16", True, False), ("bf16+channels_last", True, True)]
    x, y = probe_batch(batch_size, size, device)
    runs = {name: (make_model().to(device), bf16, cl) for name, bf16, cl in candidates}
    first = next(iter(runs.values()))[0]
    for model, _, _ in runs.values():
        share_linear_weights(model, first)
    layers = {}
    if device.type == "cpu" and allow_nnpack:  # NNPACK where it is faster, layer by layer
        layers = (pick_convs or convs.pick_layers)(make_model().to(device), x)
    nnpack = convs.chosen(layers)
    if nnpack:  # fp32 only (NNPACK has no bf16), in either memory format
        for name, cl in (("fp32+nnpack", False), ("fp32+channels_last+nnpack", True)):
            model = make_model().to(device)
            share_linear_weights(model, first)
            convs.apply(model, layers)
            candidates.append((name, False, cl))
            runs[name] = (model, False, cl)
    for model, bf16, cl in runs.values():  # warm-up: allocator, oneDNN primitive caches
        measure(model, x, y, bf16=bf16, channels_last=cl, steps=1)
    best = _best_seconds(runs, x, y, measure, steps=steps, rounds=rounds)
    del runs
    base = best["fp32"]
    pick = "fp32"
    for name, _, _ in candidates[1:]:
        if best[name] * MIN_GAIN <= base and best[name] < best[pick]:
            pick = name
    _, bf16, cl = next(c for c in candidates if c[0] == pick)
    used = nnpack if pick.endswith("+nnpack") else []
    if not allow_nnpack:
        why_nnpack = "NNPACK not allowed"
    elif device.type != "cpu":
        why_nnpack = "NNPACK not tried (it is for CPUs)"
    elif not convs.available():
        why_nnpack = "NNPACK not tried: not available here (it needs a CPU with AVX2 and FMA)"
    elif not layers:
        why_nnpack = "NNPACK not tried: no convolution it can compute"
    elif not nnpack:
        why_nnpack = "NNPACK convolutions measured slower than oneDNN's in every layer"
    elif used:
        wgrad = sum(bool(layers[k].get("wgrad")) for k in used)
        why_nnpack = (f"NNPACK convolutions in {len(used)} of {len(layers)} layers "
                      f"({', '.join(used)}; {wgrad} with their weight gradient)")  # fmt: skip
    else:
        why_nnpack = (f"NNPACK measured faster in {len(nnpack)} layers, but not in the whole "
                      "step")  # fmt: skip
    if not allow_bf16:
        why_bf16 = "bf16 not allowed (the profile, or --no-bf16)"
    elif not supported:
        why_bf16 = f"bf16 not tried: {device.type} without bf16 support"
    else:
        why_bf16 = "bf16 measured"
    ms = sgd["sgd_step_ms"]
    why_sgd = (f"fused SGD {'used' if sgd['fused_sgd'] else 'not used'}: its step "
               f"{ms['fused']:.1f} ms against {ms['default']:.1f} ms" if ms
               else "fused SGD not measured" if not allow_fused_sgd
               else "fused SGD not available here")  # fmt: skip
    reason = (f"{pick}: fastest measured step ({best[pick]:.3f} s against {base:.3f} s in fp32, "
              f"batch {batch_size} at {size} px; a setting must gain {MIN_GAIN - 1:.0%} to be "
              f"used); {why_bf16}; {why_nnpack}; {why_sgd}")  # fmt: skip
    return {"autocast": "bf16" if bf16 else None, "channels_last": cl, "nnpack": used, **sgd,
            "bf16_supported": supported, "threads": torch.get_num_threads(),
            "step_seconds": {k: round(v, 4) for k, v in best.items()}, "nnpack_layers": layers,
            "reason": reason}  # fmt: skip


COMPILE_LIMIT_S = 120.0  # torch.compile is used only where it compiles the step within this


def measure_compile(make_model: Callable, device, chosen: dict, *, batch_size: int, size: int,
                    steps: int = 2, rounds: int = 2, measure: Callable | None = None,
                    backend: str = "inductor") -> dict:  # fmt: skip
    """Measure ``torch.compile`` on top of the eager settings ``chosen`` picked, and add the
    outcome to ``chosen`` (returned).

    The compiled model trains the same batch as the eager one, candidates interleaved; it is
    used only when its step is :data:`MIN_GAIN` faster and compiling (the first step: the
    forward and the backward graph) took at most :data:`COMPILE_LIMIT_S`. A compiler that is
    missing or fails (torch.compile needs a C++ compiler on a CPU) is a reason, not an error.

    ``backend`` is torch.compile's (tests use ``"eager"``, which traces without compiling).
    Adds ``compile`` (the backend, or ``None``), ``compile_seconds``, the compiled step under
    ``step_seconds[<key>+compile]`` and a sentence to ``reason``.
    """
    import torch

    from alexnet_course.compare import convs

    measure = measure or functools.partial(_step_seconds, fused_sgd=chosen.get("fused_sgd", False))
    bf16, cl = chosen["autocast"] == "bf16", chosen["channels_last"]
    key = describe_key(dict(chosen, nnpack=[]))  # compiled: oneDNN's convolutions
    x, y = probe_batch(batch_size, size, device)
    eager = make_model().to(device)  # as chosen: with NNPACK's layers where they were
    if chosen.get("nnpack"):
        convs.apply(eager, chosen["nnpack_layers"])
    chosen.update(compile=None, compile_seconds=None)
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(make_model().to(device), backend=backend)
        measure(compiled, x, y, bf16=bf16, channels_last=cl, steps=1)  # compiles
    except Exception as e:  # a missing compiler, an unsupported op: eager it is
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        chosen["reason"] += f"; torch.compile not used: it failed here ({type(e).__name__}: {first})"
        return chosen
    compile_s = time.perf_counter() - t0
    measure(eager, x, y, bf16=bf16, channels_last=cl, steps=1)  # warm-up, as compiling was
    best = _best_seconds({"eager": (eager, bf16, cl), "compiled": (compiled, bf16, cl)}, x, y,
                         measure, steps=steps, rounds=rounds)  # fmt: skip
    chosen["compile_seconds"] = round(compile_s, 1)
    chosen["step_seconds"][key + "+compile"] = round(best["compiled"], 4)
    gain = best["eager"] / best["compiled"]
    if compile_s > COMPILE_LIMIT_S:
        verdict = f"not used: compiling took {compile_s:.0f} s (limit {COMPILE_LIMIT_S:.0f} s)"
    elif gain < MIN_GAIN:
        verdict = f"not used: {gain:.2f}x the eager step (a setting must gain {MIN_GAIN - 1:.0%})"
    else:
        chosen["compile"] = backend
        verdict = f"used: {gain:.2f}x the eager step, compiled in {compile_s:.0f} s"
        if chosen.get("nnpack"):
            chosen["nnpack"] = []
            verdict += ", in place of NNPACK's convolutions (torch.compile cannot trace them)"
    chosen["reason"] += (f"; torch.compile {verdict} ({best['compiled']:.3f} s against "
                         f"{best['eager']:.3f} s per step)")  # fmt: skip
    return chosen


def fixed_settings(device, *, bf16: bool, reason: str) -> dict:
    """Settings chosen without measuring (the smoke profile), in the same shape."""
    import torch

    use = bf16 and bf16_supported(device)
    return {"autocast": "bf16" if use else None, "channels_last": False,
            "bf16_supported": bf16_supported(device), "threads": torch.get_num_threads(),
            "nnpack": [], "fused_sgd": False, "compile": None, "step_seconds": {},
            "reason": reason}  # fmt: skip


def describe_key(settings: dict) -> str:
    """The candidate name of ``settings`` in ``step_seconds`` ("bf16+channels_last", ...)."""
    name = "bf16" if settings["autocast"] == "bf16" else "fp32"
    name += "+channels_last" if settings["channels_last"] else ""
    return name + ("+nnpack" if settings.get("nnpack") else "")


def describe(settings: dict) -> str:
    parts = ["bf16 autocast" if settings["autocast"] == "bf16" else "fp32"]
    if settings["channels_last"]:
        parts.append("channels_last")
    if settings.get("nnpack"):
        parts.append(f"NNPACK convolutions ({len(settings['nnpack'])} layers)")
    if settings.get("fused_sgd"):
        parts.append("fused SGD")
    if settings.get("compile"):
        parts.append("torch.compile")
    return " + ".join(parts)


HEAP_SETTING = "glibc malloc: freed memory kept in the heap (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)"


def keep_freed_memory() -> str | None:
    """Keep freed memory in this process's heap instead of returning it to the system.

    glibc's malloc gives every block over its mmap threshold (at most 32 MB) a mapping of
    its own and unmaps it when freed, so each training step of AlexNet faults its weight-
    and activation-sized tensors in again: in fp32 on a 2-core CPU at 224 px, batch 32, the
    kernel took about 1 s of every 4 steps. With this setting, a training step is
    1.04x to 1.19x faster there (measured by ``alexnet-course bench``'s ``+heap`` variant).
    The cost: the process keeps its peak memory until it exits, which a training run
    reaches at every step anyway.

    Returns:
        What was set, or ``None`` where the C library is not glibc (its allocator stays as
        it is).
    """
    import ctypes

    if not is_glibc():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-4, 0) == 1 and libc.mallopt(-1, 2**31 - 1) == 1  # M_MMAP_MAX, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return None
    return HEAP_SETTING if ok else None


def release_memory() -> None:
    """Between arms: collect what the last arm left and give the heap's free pages back to
    the system (glibc's ``malloc_trim``), so the next arm, a Keras one above all, starts
    from the memory the run holds, not from the last arm's peak."""
    import gc

    if "keras" in sys.modules:  # Keras keeps every model and traced step of the process
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    trim_malloc()


class ThreadWatch:
    """Keeps torch's thread count right while other processes come and go.

    With two threads on a 2-core machine, one busy neighbour process makes every step wait
    for the thread that shares its core: lesson 03's AlexNet (batch 128, 67 px, fp32) then
    ran at 102 to 112 images/s with two threads and at 136 with one, while on an idle
    machine two threads are the faster. A count measured once at the start cannot hold up,
    so the training loop calls :meth:`tick` after every step, and the watch runs a few steps
    with one thread fewer (or more, back to the start count), compares their median time
    with the latest steps at the current count, and keeps the faster by :data:`MIN_GAIN`.

    It probes ``first`` steps in, then ``every`` steps after a switch; each probe that keeps
    the count doubles the wait (up to ``most``), so an unchanging machine pays little. A
    step time that moves by more than :data:`LOAD_CHANGE` from the last decision's (a
    neighbour came or went) brings the next probe forward.

    Args:
        first: steps before the first probe.
        every: the shortest wait between probes, in steps.
        most: the longest wait between probes, in steps.
        probe: steps per probe; the first of them is not counted (the thread pool resizes).
        set_threads: replaces ``torch.set_num_threads`` (tests).
        get_threads: replaces ``torch.get_num_threads`` (tests).
        clock: replaces ``time.perf_counter`` (tests).
    """

    def __init__(self, *, first: int = 10, every: int = 50, most: int = 400, probe: int = 6,
                 set_threads: Callable | None = None, get_threads: Callable | None = None,
                 clock: Callable = time.perf_counter):  # fmt: skip
        if set_threads is None or get_threads is None:
            import torch

            set_threads, get_threads = torch.set_num_threads, torch.get_num_threads
        self.set_threads, self.clock = set_threads, clock
        self.start_threads = self.current = get_threads()
        self.first, self.every, self.most, self.probe = first, every, most, probe
        self._wait = every
        self._ref: float | None = None  # the kept count's median step at the last decision
        self.steps_at: dict[int, int] = {}
        self.switches: list[dict] = []
        self.probes = 0
        self._steady: list[float] = []
        self._trial: list[float] | None = None
        self._until_probe = first
        self._last = None

    @property
    def active(self) -> bool:
        return self.start_threads > 1

    def restart(self) -> None:
        """The next tick starts a new interval (an epoch begins: evaluation is not a step)."""
        self._last = self.clock()

    def tick(self) -> None:
        """One training step has finished."""
        now = self.clock()
        if self._last is None:
            self._last = now
            return
        seconds, self._last = now - self._last, now
        running = self.current if self._trial is None else self._other()
        self.steps_at[running] = self.steps_at.get(running, 0) + 1
        if not self.active:
            return
        if self._trial is not None:
            self._trial.append(seconds)
            if len(self._trial) >= self.probe:
                self._decide()
            return
        self._steady = (self._steady + [seconds])[-self.probe:]
        self._until_probe -= 1
        if self._ref is not None and len(self._steady) == self.probe:
            from statistics import median

            if abs(median(self._steady) / self._ref - 1) > LOAD_CHANGE:
                self._until_probe = 0  # the load changed: probe now
        if self._until_probe <= 0 and len(self._steady) >= 2:
            self._trial = []
            self.set_threads(self._other())
            self._last = self.clock()  # resizing the pool is not part of a step

    def _other(self) -> int:
        return self.start_threads - 1 if self.current == self.start_threads else self.start_threads

    def _decide(self) -> None:
        from statistics import median

        other, tried = self._other(), median(self._trial[1:])
        kept = median(self._steady)
        self.probes += 1
        if tried * MIN_GAIN <= kept:
            self.switches.append({"step": sum(self.steps_at.values()), "from": self.current,
                                  "to": other,
                                  "step_seconds": [round(kept, 4), round(tried, 4)]})  # fmt: skip
            self.current, self._ref = other, tried
            self._steady = self._trial[1:]
            self._wait = self.every
        else:
            self.set_threads(self.current)
            self._ref = kept
            self._steady = []  # the next steps show the load now
            self._wait = min(self._wait * 2, self.most)
        self._trial = None
        self._until_probe = self._wait
        self._last = self.clock()

    def record(self) -> dict:
        """What ran: steps at each thread count, the probes and every switch (the first 50)."""
        return {"start": self.start_threads, "end": self.current,
                "steps_at": {str(k): v for k, v in sorted(self.steps_at.items())},
                "probes": self.probes, "switches": self.switches[:50],
                "rule": (f"{self.probe} steps at the other count ({self.start_threads} or "
                         f"{max(self.start_threads - 1, 1)}) after {self.first} steps, then "
                         f"every {self.every} to {self.most} steps or when the step time "
                         f"moves by {LOAD_CHANGE:.0%}; the faster median by "
                         f"{MIN_GAIN - 1:.0%} is kept")
                if self.active else "one thread: nothing to choose"}  # fmt: skip


MAX_COMPILE_SECONDS = 120  # XLA that takes longer than this to compile a step is not used


def measure_keras_settings(make_model: Callable, make_train_step: Callable, x, y, *,
                           steps: int = 2, rounds: int = 2,
                           clock: Callable = time.perf_counter) -> dict:  # fmt: skip
    """Measure lesson 04's training step as written and under XLA (``jit_compile``).

    The learner's ``make_train_step`` returns a ``tf.function``; an outer
    ``tf.function(jit_compile=True)`` around it compiles the whole step with XLA. Both run on
    the same batch in interleaved rounds; XLA is used only when it is at least
    :data:`MIN_GAIN` faster and compiles within :data:`MAX_COMPILE_SECONDS`.

    Returns:
        ``{"jit_compile": bool, "step_seconds": {"plain": s, "xla": s},
        "compile_seconds": {...}, "chosen_step_seconds": s, "reason": str}``.
    """
    from alexnet_course.compare.keras_sgd import keras_sgd

    candidates = {}
    first = {}
    for name in ("plain", "xla"):  # the arms' optimizer (keras_arm), at a harmless rate
        step = make_train_step(make_model(), keras_sgd(1e-4, **SGD_ARGS))
        if name == "xla":
            step = xla_step(step)
        t0 = clock()
        try:
            float(step(x, y))  # traces and compiles
        except Exception as e:  # noqa: BLE001 - an op XLA cannot compile: plain it is
            first[name] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            continue
        first[name] = round(clock() - t0, 2)
        candidates[name] = step
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, step in candidates.items():
            for _ in range(steps):
                t0 = clock()
                float(step(x, y))
                best[name] = min(best.get(name, float("inf")), clock() - t0)
    plain = best["plain"]
    xla = best.get("xla")
    use = (xla is not None and xla * MIN_GAIN <= plain
           and first["xla"] <= MAX_COMPILE_SECONDS)  # fmt: skip
    if "xla" not in best:
        why = f"XLA {first['xla']}"
    else:
        why = (f"{xla:.3f} s per step under XLA against {plain:.3f} s as written (first step "
               f"{first['xla']} s under XLA); XLA must gain {MIN_GAIN - 1:.0%} and compile "
               f"within {MAX_COMPILE_SECONDS} s")  # fmt: skip
    return {"jit_compile": use, "step_seconds": {k: round(v, 4) for k, v in best.items()},
            "compile_seconds": first, "chosen_step_seconds": xla if use else plain,
            "reason": ("XLA" if use else "as written (no XLA)") + f": {why}"}  # fmt: skip


def xla_step(step: Callable) -> Callable:
    """``step`` compiled as a whole with XLA (see :func:`measure_keras_settings`)."""
    import tensorflow as tf

    return tf.function(lambda x, y: step(x, y), jit_compile=True)
