"""Pick the fastest correct training settings for this machine, by measurement.

The reference path used to turn bf16 autocast on for every CPU. On a CPU without bf16
matrix units (no AVX512-BF16 or AMX) oneDNN emulates bf16, and one training step of lesson
03's AlexNet ran 54x slower than in fp32 on such a machine. So nothing is assumed:

* bf16 autocast is a candidate only where the hardware supports it
  (:func:`bf16_supported`), and is used only when a measurement on this machine shows it
  faster than fp32;
* ``channels_last`` is used only when a measurement shows it faster;
* the measurement trains the very model the arm trains (same batch size and input size)
  for a few steps, candidates interleaved so that a noisy neighbour hits them alike.

Every choice, the candidates' measured step times and the reason are returned as a dict
that goes into each arm's ``results.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_GAIN = 1.05  # a candidate must be at least 5% faster than the plain setting to be used


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


def _step_seconds(model, x, y, *, bf16: bool, channels_last: bool, steps: int) -> list[float]:
    """Seconds per training step (SGD, cross-entropy) of ``model`` on one batch."""
    import torch

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
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
    return times


def measure_settings(make_model: Callable, device, *, batch_size: int, size: int,
                     allow_bf16: bool = True, steps: int = 2, rounds: int = 2,
                     measure: Callable | None = None) -> dict:  # fmt: skip
    """Measure the candidate settings and return the fastest correct one.

    Args:
        make_model: builds a fresh model (on the CPU) to measure; the same for every candidate.
        device: where training will run.
        batch_size, size: the batch and input size training will use.
        allow_bf16: the profile permits bf16 autocast (it is still measured, never assumed).
        steps: timed steps per candidate and round (after one untimed warm-up step).
        rounds: candidates are measured in turn this many times; each keeps its best time.
        measure: replaces :func:`_step_seconds` (tests).

    Returns:
        ``{"autocast": "bf16" | None, "channels_last": bool, "bf16_supported": bool,
        "step_seconds": {candidate: seconds}, "reason": str}``.
    """
    import torch

    measure = measure or _step_seconds
    supported = bf16_supported(device)
    candidates = [("fp32", False, False), ("fp32+channels_last", False, True)]
    if allow_bf16 and supported:
        candidates += [("bf16", True, False), ("bf16+channels_last", True, True)]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    best: dict[str, float] = {}
    models = {name: make_model().to(device) for name, _, _ in candidates}
    for name, bf16, cl in candidates:  # warm-up: allocator, oneDNN primitive caches
        measure(models[name], x, y, bf16=bf16, channels_last=cl, steps=1)
    for _ in range(rounds):
        for name, bf16, cl in candidates:
            t = min(measure(models[name], x, y, bf16=bf16, channels_last=cl, steps=steps))
            best[name] = min(best.get(name, float("inf")), t)
    del models
    base = best["fp32"]
    pick = "fp32"
    for name, _, _ in candidates[1:]:
        if best[name] * MIN_GAIN <= base and best[name] < best[pick]:
            pick = name
    _, bf16, cl = next(c for c in candidates if c[0] == pick)
    if not allow_bf16:
        why_bf16 = "bf16 not allowed (the profile, or --no-bf16)"
    elif not supported:
        why_bf16 = f"bf16 not tried: {device.type} without bf16 support"
    else:
        why_bf16 = "bf16 measured"
    reason = (f"{pick}: fastest measured step ({best[pick]:.3f} s against {base:.3f} s in fp32, "
              f"batch {batch_size} at {size} px; a setting must gain {MIN_GAIN - 1:.0%} to be "
              f"used); {why_bf16}")  # fmt: skip
    return {"autocast": "bf16" if bf16 else None, "channels_last": cl,
            "bf16_supported": supported, "threads": torch.get_num_threads(),
            "step_seconds": {k: round(v, 4) for k, v in best.items()}, "reason": reason}  # fmt: skip


def fixed_settings(device, *, bf16: bool, reason: str) -> dict:
    """Settings chosen without measuring (the smoke profile), in the same shape."""
    import torch

    use = bf16 and bf16_supported(device)
    return {"autocast": "bf16" if use else None, "channels_last": False,
            "bf16_supported": bf16_supported(device), "threads": torch.get_num_threads(),
            "step_seconds": {}, "reason": reason}  # fmt: skip


def describe_key(settings: dict) -> str:
    """The candidate name of ``settings`` in ``step_seconds`` ("bf16+channels_last", ...)."""
    name = "bf16" if settings["autocast"] == "bf16" else "fp32"
    return name + ("+channels_last" if settings["channels_last"] else "")


def describe(settings: dict) -> str:
    parts = ["bf16 autocast" if settings["autocast"] == "bf16" else "fp32"]
    if settings["channels_last"]:
        parts.append("channels_last")
    return " + ".join(parts)
