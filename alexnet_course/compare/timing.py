"""Before the first arm: the settings measured on this machine (:mod:`.settings`) and the
time plan (:mod:`.plan`) made from them."""

from __future__ import annotations

import time

from alexnet_course import CourseError
from alexnet_course.compare import plan as plan_mod
from alexnet_course.compare.keras_arm import keras_fixed_settings
from alexnet_course.compare.models import TRAIN_EVAL_IMAGES, scratch_torch_alexnet


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
    if profile.try_compile and not opts.no_compile:
        print(f"  {st.describe(chosen)}; measuring torch.compile on top of it (compiling "
              f"takes a while on a CPU) ...", flush=True)  # fmt: skip
        chosen = st.measure_compile(make, device, chosen, batch_size=profile.batch_size,
                                    size=profile.input_size)  # fmt: skip
    else:
        chosen.update(compile=None, compile_seconds=None)
        chosen["reason"] += "; torch.compile not measured (--no-compile, or the profile)"
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
    import keras

    make_model, make_train_step, x, y = keras_probe(ctx)
    opt = keras.optimizers.SGD(1e-4, momentum=0.9)
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


def plan_arms(ctx, arms: list[str]):
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
        k = (ctx.keras_settings or {}).get("chosen_step_seconds")
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
