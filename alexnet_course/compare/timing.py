"""Before the first arm: the settings measured on this machine (:mod:`.settings`) and the
time plan (:mod:`.plan`) made from them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.compare import plan as plan_mod
from alexnet_course.compare.keras_arm import keras_fixed_settings
from alexnet_course.compare.models import TRAIN_EVAL_IMAGES, scratch_torch_alexnet

CACHE_ENV = "XDG_CACHE_HOME"
COMPILE_BUDGET_MINUTES = 30  # under this budget torch.compile is not measured (20+ s on a CPU)


def cache_path(ctx) -> tuple[Path, dict]:
    """Where this machine's measurement for this run is kept, and what it is keyed by: the
    CPU and GPU, the torch threads, the library versions, the profile, the flags that change
    what is measured, and the lesson code measured (a learner's model is measured afresh)."""
    from alexnet_course import __version__
    from alexnet_course.provenance import hardware_text, kernel_limits, versions

    code_hash = hashlib.sha256()
    for lesson, name in (("03_torch_scratch", "alexnet"), ("04_keras_scratch", "keras_alexnet"),
                         ("04_keras_scratch", "keras_train")):  # fmt: skip
        f = ctx.code.root / ctx.code.impl / lesson / f"{name}.py"
        code_hash.update(f.read_bytes() if f.is_file() else b"")
    p, o = ctx.profile, ctx.options
    key = {"hardware": hardware_text(ctx.device), "kernel_environment": kernel_limits(),
           "versions": versions(), "alexnet_course": __version__,
           "profile": {k: getattr(p, k) for k in ("name", "input_size", "batch_size", "norm",
                                                   "bf16", "tune", "try_compile", "scratch_init")},
           "flags": {"no_bf16": o.no_bf16, "no_compile": o.no_compile, "no_nnpack": o.no_nnpack,
                     "budget": o.budget_minutes is not None},
           "lesson_code": code_hash.hexdigest()[:16]}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache")
    return base / "alexnet-course" / "settings" / f"{digest}.json", key


def cached_measurements(ctx) -> dict | None:
    """This machine's earlier measurement for the same key, unless ``--remeasure``."""
    if ctx.options.remeasure:
        return None
    path, key = cache_path(ctx)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("key") == key else None


def save_measurements(ctx, measured: dict) -> Path | None:
    path, key = cache_path(ctx)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "measured": time.strftime("%Y-%m-%d %H:%M %Z"),
                                   **measured}, indent=1))  # fmt: skip
        tmp.replace(path)
    except OSError:  # a read-only home: measured again next time
        return None
    return path


def measure(ctx, arms: list[str]):
    """The torch and Keras settings for ``arms`` (and the Keras step, where a plan needs
    it): measured here once per machine and kept in the user's cache folder; a later run
    with the same key reuses them, says so, and measures in seconds."""
    from alexnet_course.provenance import public_path

    want_torch = any(a.startswith("torch") for a in arms)
    want_keras = any(a.startswith("keras") for a in arms)
    cached = cached_measurements(ctx)
    if cached is not None and (not want_torch or cached.get("torch")) and (
            not want_keras or cached.get("keras")):  # fmt: skip
        print(f"reusing the settings measured on this machine on {cached['measured']} "
              f"({public_path(cache_path(ctx)[0])}; --remeasure measures again)", flush=True)
        torch_s = dict(cached["torch"], cached=cached["measured"]) if want_torch else None
        keras_s = dict(cached["keras"], cached=cached["measured"]) if want_keras else None
        return torch_s, keras_s, cached.get("keras_step")
    t0 = time.perf_counter()
    torch_s = torch_settings(ctx) if want_torch else None
    keras_s = keras_settings(ctx) if want_keras else None
    k_step = None
    if want_keras and keras_s.get("chosen_step_seconds") is None and ctx.options.budget_minutes:
        print("measuring a Keras training step ...", flush=True)
        k_step = keras_step(ctx)
    print(f"measured in {time.perf_counter() - t0:.0f} s", flush=True)
    if ctx.profile.tune or ctx.options.budget_minutes is not None:
        old = cached_measurements(ctx.but(options=dataclasses.replace(ctx.options, remeasure=False))) or {}
        saved = save_measurements(ctx, {"torch": torch_s or old.get("torch"),
                                        "keras": keras_s or old.get("keras"),
                                        "keras_step": k_step or old.get("keras_step")})  # fmt: skip
        if saved is not None:
            print(f"  kept for the next run in {public_path(saved)}", flush=True)
    return torch_s, keras_s, k_step


def torch_settings(ctx) -> dict:
    """The torch arms' precision and memory format, measured once on lesson 03's model (see
    :mod:`alexnet_course.compare.settings`); every torch arm then trains with them."""
    from alexnet_course.compare import settings as st

    profile, opts, device = ctx.profile, ctx.options, ctx.device

    def make():
        return scratch_torch_alexnet(profile, ctx.data.num_classes, ctx.code)

    if not profile.tune and opts.budget_minutes is None:
        return st.fixed_settings(device, bf16=profile.bf16 and not opts.no_bf16,
                                 reason=f"profile {profile.name}: not measured")
    if not profile.tune:  # a budget needs a measured step; the profile's precision stays
        chosen = st.measure_settings(make, device, batch_size=profile.batch_size,
                                     size=profile.input_size, allow_bf16=False,
                                     allow_nnpack=False, allow_fused_sgd=False, rounds=1)  # fmt: skip
        chosen.update(autocast=None, channels_last=False,
                      reason=f"profile {profile.name}: fp32, contiguous (measured for the budget)")
        chosen["chosen_step_seconds"] = chosen["step_seconds"]["fp32"]
        return chosen
    print("measuring training settings (precision, memory format, convolutions) on this "
          "machine ...")
    chosen = st.measure_settings(make, device, batch_size=profile.batch_size,
                                 size=profile.input_size,
                                 allow_bf16=profile.bf16 and not opts.no_bf16,
                                 allow_nnpack=not opts.no_nnpack)  # fmt: skip
    small = opts.budget_minutes is not None and opts.budget_minutes < COMPILE_BUDGET_MINUTES
    if profile.try_compile and not opts.no_compile and not small:
        print(f"  {st.describe(chosen)}; measuring torch.compile on top of it (compiling "
              f"takes a while on a CPU) ...", flush=True)  # fmt: skip
        chosen = st.measure_compile(make, device, chosen, batch_size=profile.batch_size,
                                    size=profile.input_size)  # fmt: skip
    else:
        chosen.update(compile=None, compile_seconds=None)
        chosen["reason"] += ("; torch.compile not measured (a budget under "
                             f"{COMPILE_BUDGET_MINUTES} min: compiling would take a large share "
                             "of it)" if small else "; torch.compile not measured (--no-compile, "
                             "or the profile)")  # fmt: skip
    print(f"  {chosen['reason']}")
    key = st.describe_key(chosen) + ("+compile" if chosen["compile"] else "")
    chosen["chosen_step_seconds"] = chosen["step_seconds"][key]
    return chosen


def keras_probe(ctx):
    """What a Keras step measurement needs: a builder of lesson 04's model, its
    ``make_train_step`` and one random batch at the profile's shape."""
    import numpy as np

    p, k = ctx.profile, ctx.data.num_classes
    ka, kt = ctx.code.keras_alexnet, ctx.code.keras_train
    rng = np.random.default_rng(0)
    x = rng.random((p.batch_size, p.input_size, p.input_size, 3), np.float32)
    y = rng.integers(0, k, p.batch_size)
    return (lambda: ka.build_alexnet(k, p.norm, p.input_size), kt.make_train_step, x, y)


def keras_settings(ctx) -> dict:
    """The Keras arms' step: as lesson 04 wrote it, or compiled whole with XLA, measured once
    on lesson 04's model (:func:`alexnet_course.compare.settings.measure_keras_settings`)."""
    from alexnet_course.compare.settings import measure_keras_settings

    if not ctx.profile.tune:
        return keras_fixed_settings(f"profile {ctx.profile.name}: not measured")
    print("measuring the Keras training step, as written and under XLA ...")
    chosen = measure_keras_settings(*keras_probe(ctx))
    print(f"  {chosen['reason']}")
    return chosen


def keras_step(ctx) -> float:
    """One training step of lesson 04's Keras AlexNet, measured (the Keras arms' rate)."""
    from alexnet_course.compare.keras_sgd import keras_sgd
    from alexnet_course.compare.settings import SGD_ARGS

    make_model, make_train_step, x, y = keras_probe(ctx)
    opt = keras_sgd(1e-4, **SGD_ARGS)  # the arms' optimizer (keras_arm), at a harmless rate
    return plan_mod.keras_step_seconds(make_model(), opt, make_train_step, x, y)


def batch_seconds(ctx, batches: int = 3) -> float:
    """Seconds the torch arms' input pipeline spends on one training batch (crop, flip,
    resize, normalise), which the measured training step leaves out."""
    from alexnet_course.compare.torch_arm import batches as make_batches

    norm = ctx.normalisation["cifar10"]
    cl = bool((ctx.torch_settings or {}).get("channels_last"))
    it = iter(make_batches(ctx, ctx.data.train, mean=norm["mean"], std=norm["std"], train=True,
                           channels_last=cl))  # fmt: skip
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            break
        n += 1
    return (time.perf_counter() - t0) / max(1, n)


def plan_arms(ctx, arms: list[str], keras_step_s: float | None = None):
    """Estimate every arm's time from measured steps; with ``--budget-minutes``, scale the
    epochs (then the training images) of every arm alike to fit it. Returns ``(plan,
    costs)``, or ``(None, ())`` when nothing was measured."""
    ts = ctx.torch_settings or {}
    torch_step = ts.get("chosen_step_seconds")
    if torch_step is None:
        return None, ()
    data = ctx.data
    torch_step += batch_seconds(ctx)  # the input pipeline's share
    steps = {a: torch_step for a in arms if a.startswith("torch")}
    # each torch arm compiles its own model once (the measurement compiled lesson 03's)
    setup = {a: ts["compile_seconds"] for a in steps} if ts.get("compile") else {}
    keras_arms = [a for a in arms if a.startswith("keras")]
    if keras_arms:
        k = (ctx.keras_settings or {}).get("chosen_step_seconds") or keras_step_s
        if k is None:
            print("measuring a Keras training step ...")
            k = keras_step(ctx)
        steps.update({a: k for a in keras_arms})
    costs = plan_mod.arm_costs(arms, steps, n_train=len(data.train), n_val=len(data.val),
                               n_test=len(data.test), batch_size=ctx.profile.batch_size,
                               keras_train_eval=min(len(data.train), TRAIN_EVAL_IMAGES),
                               setup_seconds=setup)  # fmt: skip
    try:
        plan = plan_mod.make_plan(costs, epochs=ctx.options.epochs or ctx.profile.epochs,
                                  n_train=len(data.train),
                                  budget_minutes=ctx.options.budget_minutes,
                                  spent_seconds=time.perf_counter() - ctx.started)  # fmt: skip
    except ValueError as e:
        raise CourseError(str(e)) from None
    print(plan_mod.describe(plan), flush=True)
    return plan, tuple(costs)
