"""``alexnet-course compare``: run the course's code end to end on one profile.

Five arms, each built from the lessons' code (``solutions/`` by default, the learner's
``lessons/`` with ``--impl lessons``; the runner never re-implements a lesson):

* ``torch-scratch``: lesson 03's AlexNet (the paper's, with the profile's norm);
* ``torch-tv-scratch``: torchvision's architecture from random weights;
* ``torch-pretrained``: lesson 02's ImageNet AlexNet with a new head, fine-tuned with two
  learning rates (with ``torch-tv-scratch`` it isolates what pretraining alone buys);
* ``keras-scratch``: lesson 04's Keras AlexNet and training step;
* ``keras-pretrained``: torchvision's ImageNet weights ported into Keras by lesson 04.

The story, in :func:`run`: check the lessons' code (:class:`.lesson_code.LessonCode`), load
the data with lesson 01's split and statistics, find the arms that cannot run here (no
weights, no TensorFlow: skipped with the reason, and planned for no time), measure the
settings and make the time plan (:mod:`.timing`), train every arm (:mod:`.torch_arm`,
:mod:`.keras_arm`), and write the report with lesson 05's analysis (:mod:`.report`). Every
arm gets the same data, split, augmentation, input size and epoch budget. Each epoch ends
with a checkpoint; ``--resume`` continues from the last one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.compare import callbacks as cb
from alexnet_course.compare import plan as plan_mod
from alexnet_course.compare.checkpoints import CheckpointSaver
from alexnet_course.compare.context import Options, RunContext
from alexnet_course.compare.keras_arm import run_keras_arm
from alexnet_course.compare.lesson_code import LessonCode
from alexnet_course.compare.models import ArmSkipped, require_weights
from alexnet_course.compare.profiles import ARMS, PROFILES
from alexnet_course.compare.settings import COMPILE_LIMIT_S, release_memory
from alexnet_course.compare.torch_arm import Restart, run_torch_arm
from alexnet_course.course import resolve_impl
from alexnet_course.provenance import common_record, public_path, public_text

STATS_CHUNK = 10_000  # images per call of lesson 01's channel_stats (its float64 copy: 245 MB)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="smoke (generated data, seconds), cpu (real CIFAR-10 on a CPU), gpu "
                        "(227 px); default: gpu with CUDA, else cpu")  # fmt: skip
    p.add_argument("--arms", default=",".join(ARMS),
                   help=f"comma-separated arms (default: all of {', '.join(ARMS)})")
    p.add_argument("--out", type=Path, default=Path("runs/compare"),
                   help="output folder (default runs/compare)")
    p.add_argument("--impl", choices=("solutions", "lessons"), default=None,
                   help="run the reference solutions (default where they exist) or your "
                        "lesson files")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the one seed of the run (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    p.add_argument("--no-download", action="store_true",
                   help="never download CIFAR-10 or weights (fail or skip instead)")
    p.add_argument("--data-label", default=None,
                   help='how results name the data, e.g. "CIFAR-10 (JPEG copy)"')
    p.add_argument("--budget-minutes", type=float, default=None, metavar="M",
                   help="fit the whole run into M minutes on this machine: every arm's epochs "
                        "(then training images) are scaled alike, from steps measured first")
    p.add_argument("--resume", action="store_true",
                   help="continue each arm from its last per-epoch checkpoint in --out")
    p.add_argument("--no-bf16", action="store_true",
                   help="never use bf16 autocast, even where this machine has bf16 units and "
                        "it measures faster (fp32 only, as on a CPU without bf16)")
    p.add_argument("--no-compile", action="store_true",
                   help="never use torch.compile (by default a tuned profile measures it and "
                        "uses it where it trains 5%% faster and compiles within "
                        f"{COMPILE_LIMIT_S:.0f} s)")  # fmt: skip
    p.add_argument("--no-nnpack", action="store_true",
                   help="never use NNPACK's convolutions (by default a tuned profile on a CPU "
                        "measures them layer by layer and uses them where the step trains 5%% "
                        "faster)")  # fmt: skip
    p.add_argument("--remeasure", action="store_true",
                   help="measure the training settings again instead of reusing this machine's "
                        "earlier measurement (kept in ~/.cache/alexnet-course/settings)")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train the torch arms on N processes of this machine (one per GPU; "
                        "DistributedDataParallel): runs this command under torchrun "
                        "--standalone --nproc-per-node N")


# ---------------------------------------------------------------- the data, by lesson 01
def load_data(ctx: RunContext) -> RunContext:
    """CIFAR-10 (or the smoke profile's generated data) split by lesson 01's
    ``stratified_split``, normalised with lesson 01's ``channel_stats`` of the training
    images, batched with the library's fast path where it equals lesson 01's functions."""
    from alexnet_course.data import load_cifar10, write_synthetic_cifar10

    opts, profile, code = ctx.options, ctx.profile, ctx.code
    if profile.synthetic:
        root = opts.out / "synthetic-data"
        if not (root / "cifar-10-batches-py").is_dir():
            write_synthetic_cifar10(root, n_train=400, n_test=200, seed=opts.seed)
        data = load_cifar10(root, val_size=profile.val_size, seed=opts.seed, split=code.split)
    else:
        data = load_cifar10(opts.data_dir, val_size=profile.val_size, seed=opts.seed,
                            download=not opts.no_download, split=code.split)  # fmt: skip
    if profile.train_limit is not None and profile.train_limit < len(data.train):
        data = fewer_training_images(data, profile.train_limit, opts.seed, code)
    mean, std = _stats(code, data.train.images)
    normalisation = {"cifar10": {"mean": mean, "std": std, "by": f"lesson 01's channel_stats "
                                 f"({code.impl}) of the {len(data.train)} training images"}}  # fmt: skip
    return ctx.but(data=data, all_data=data, normalisation=normalisation,
                   pipeline=code.fast_paths())


def _stats(code: LessonCode, images) -> tuple:
    """Lesson 01's channel statistics of ``images``, computed a chunk at a time and combined
    (the mean of means and the variance within plus between chunks, weighted by size)."""
    import numpy as np

    n, parts = len(images), []
    for i in range(0, n, STATS_CHUNK):
        chunk = images[i : i + STATS_CHUNK]
        m, s = code.channel_stats(chunk)
        parts.append((len(chunk), np.asarray(m), np.asarray(s)))
    mean = sum(k * m for k, m, _ in parts) / n
    var = sum(k * (s**2 + (m - mean) ** 2) for k, m, s in parts) / n
    return tuple(float(v) for v in mean), tuple(float(v) for v in np.sqrt(var))


def fewer_training_images(data, n: int, seed: int, code: LessonCode):
    """The same ``n`` training images for every arm: lesson 01's stratified split, keeping
    its held-out part (each class in its share)."""
    import numpy as np

    from alexnet_course.data.cifar10 import Split

    _, keep = code.split(data.train.labels, n, seed)
    keep = np.sort(np.asarray(keep))
    return dataclasses.replace(data, train=Split(data.train.images[keep], data.train.labels[keep]))


def with_plan(ctx: RunContext, plan, costs=None) -> RunContext:
    """``ctx`` under ``plan``: its training images cut to the plan's, alike for every arm."""
    data = ctx.all_data
    if plan is not None and plan.train_images < len(data.train):
        data = fewer_training_images(data, plan.train_images, ctx.options.seed, ctx.code)
    return ctx.but(plan=plan, data=data, costs=tuple(costs) if costs is not None else ctx.costs)


# ---------------------------------------------------------------- what can run
def skip_reason(arm: str, ctx: RunContext) -> str | None:
    """Why ``arm`` cannot run here (no TensorFlow, no ImageNet weights), or ``None``. The
    weights are fetched now, before anything is measured, where downloading is allowed."""
    import importlib.util

    if arm.startswith("keras") and importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow/Keras is not installed (pip install tensorflow keras)"
    if arm.endswith("pretrained"):
        import torchvision

        try:
            require_weights(torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
                            download=not ctx.options.no_download)  # fmt: skip
        except ArmSkipped as e:
            return public_text(str(e))
    return None


def provenance(ctx: RunContext) -> dict:
    from alexnet_course.compare.settings import describe

    opts, data = ctx.options, ctx.data
    return {
        **common_record(ctx.device, argv=list(opts.argv)),
        "device": str(ctx.device),
        "allocator": ctx.allocator,
        "precision": (f"{describe(ctx.torch_settings)} (torch arms)"
                      + (", fp32 (keras arms)" if any(a.startswith("keras") for a in opts.arms)
                         else "") if ctx.torch_settings else "fp32"),
        "data_source": "synthetic (alexnet-course data synth)" if ctx.profile.synthetic
        else f"{opts.data_label or 'CIFAR-10'} at {public_path(data.source)}",
        "data_sha256": data.checksum,
        "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test),
                  "val_seed": data.val_seed, "val_sha256": _digest(data.val),
                  "by": f"lesson 01's stratified_split ({ctx.code.impl})"},
        "normalisation": ctx.normalisation,
        "pipeline": ctx.pipeline,
        "seed": opts.seed,
        "impl": ctx.code.impl,
        "profile": asdict(ctx.profile),
    }  # fmt: skip


def _digest(split) -> str:
    """Which images a split holds (its labels and pixels), in 16 hex digits."""
    import hashlib

    import numpy as np

    h = hashlib.sha256(np.ascontiguousarray(split.labels).tobytes())
    h.update(np.ascontiguousarray(split.images).tobytes())
    return h.hexdigest()[:16]


def sample_grid(ctx: RunContext, path: Path) -> None:
    """A labelled grid of test images, drawn by lesson 01's ``show_batch``."""
    norm = ctx.normalisation["cifar10"]
    draw_samples(ctx.code, ctx.data.test, ctx.data.classes, norm["mean"], norm["std"], path)


def draw_samples(code: LessonCode, test, classes, mean, std, path: Path) -> None:
    """24 test images in four columns by lesson 01's ``show_batch``, its smallest text
    recorded in the PNG (the site shows it wide enough to read)."""
    from alexnet_course.compare.report import record_text_sizes

    try:
        x = code.data.preprocess(test.images[:24], mean, std)
        with record_text_sizes():
            code.data.show_batch(x, test.labels[:24], classes, path, mean, std, ncols=4)
    except (NotImplementedError, CourseError) as e:
        print(f"sample grid skipped: {e}")


def rewrite_report(folder: Path, impl: str | None = None, data_dir: Path | None = None) -> str:
    """``alexnet-course report FOLDER``: the figures and report.md of a run folder, drawn
    again from its results.json files by this version of the code (lesson 05's analysis from
    ``impl``); with ``data_dir``, the sample grid too (its test images)."""
    from alexnet_course.compare.report import load_results, write_report
    from alexnet_course.data import CLASSES, load_cifar10

    results = load_results(folder)
    if not results:
        raise CourseError(f"{folder}: no <arm>/results.json in it")
    code = LessonCode(resolve_impl(impl))
    if data_dir is not None:
        data = load_cifar10(data_dir, val_size=0)
        norm = next((r["provenance"].get("normalisation", {}).get("cifar10") for r in results
                     if r.get("provenance")), None)  # fmt: skip
        mean, std = (norm["mean"], norm["std"]) if norm else _stats(code, data.train.images)
        draw_samples(code, data.test, data.classes, mean, std, folder / "samples.png")
    return write_report(results, folder, list(CLASSES), code.analysis, code.impl)


def finished(folder: Path, ctx: RunContext) -> dict | None:
    """The results of an arm that already finished in ``folder`` with the same epochs (for
    ``--resume``); ``None`` when it must (re)run."""
    path = folder / "results.json"
    if not path.is_file() or CheckpointSaver(folder).exists():
        return None
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return None
    if old.get("status") != "ok":
        return None
    ran = len(old["history"]["val_accuracy"])
    if ran != ctx.epochs:
        raise CourseError(f"{path} holds a finished {ran}-epoch run; resume with --epochs {ran} "
                          "(or start afresh without --resume)")  # fmt: skip
    return old


# ---------------------------------------------------------------- the command
def run_compare(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """The command (``argv``: its arguments, as recorded in the provenance; default the
    process's); under torchrun every rank runs it, and rank 0 alone prints and writes."""
    import sys

    from alexnet_course.compare import distributed as dd
    from alexnet_course.device import pick_device

    options = Options.from_args(args, list(sys.argv[1:] if argv is None else argv))
    device = pick_device()
    dist = dd.setup(device.type)
    if dist.on and device.type == "cuda":
        import torch

        device = torch.device("cuda", dist.local_rank)  # one GPU per rank
    done = False
    try:
        with dd.quiet_unless_main(dist):
            rc = run(options, device, dist)
        done = True
        return rc
    finally:
        dd.teardown(dist, finished=done)


def _setup(options: Options, device, dist) -> RunContext:
    import torch

    name = options.profile or ("gpu" if torch.cuda.is_available() else "cpu")
    profile = PROFILES[name]
    unknown = sorted(set(options.arms) - set(ARMS))
    if unknown:
        raise CourseError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if name == "gpu" and device.type != "cuda":
        raise CourseError("--profile gpu needs a CUDA GPU; none was found (use --profile cpu)")
    code = LessonCode(resolve_impl(options.impl))
    code.preflight(list(options.arms))  # an unfinished task stops the run here, in one line
    return RunContext(options, profile, device, dist, code, started=time.perf_counter())


def run(options: Options, device, dist) -> int:
    ctx = _setup(options, device, dist)
    out = options.out
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:
        ctx, skipped, replanner, prov = _prepare(ctx, dist)
    except (CourseError, KeyboardInterrupt):
        if dist.main:  # a refused run leaves nothing behind: what it made is removed
            _remove_made(out, made)
        raise
    return _train_and_report(ctx, skipped, replanner, prov)


def _remove_made(out: Path, made: list[Path]) -> None:
    """Remove what a refused run made: ``out`` and its parents where it created them, else
    the generated data and the sample grid it wrote into an existing ``out``."""
    import shutil

    if made:
        shutil.rmtree(made[-1], ignore_errors=True)
        return
    shutil.rmtree(out / "synthetic-data", ignore_errors=True)


def _prepare(ctx: RunContext, dist):
    """Everything before the first arm: data, skips, measurements, the plan. Returns the
    context, the skipped arms with why, the replanner (or None) and the provenance."""
    from alexnet_course.compare import distributed as dd
    from alexnet_course.compare.settings import keep_freed_memory
    from alexnet_course.compare.timing import measure, plan_arms
    from alexnet_course.device import seed_everything

    options, out = ctx.options, ctx.options.out
    # 1.04x to 1.19x per training step on glibc (`bench`'s +heap); it cannot be undone in a
    # process, so it is not measured here against the default, as the other settings are
    if ctx.profile.tune:  # a tuned profile's training runs (not the smoke profile's seconds)
        ctx = ctx.but(allocator=keep_freed_memory() or "the C library's defaults")
    seed_everything(options.seed)
    with dd.main_first(dist):  # rank 0 writes generated data or downloads; then the others read
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
        ctx = load_data(ctx)
        skipped = {a: why for a in options.arms if (why := skip_reason(a, ctx)) is not None}
    arms = list(options.arms)
    runnable = [a for a in arms if a not in skipped]
    if any(a.endswith("pretrained") for a in runnable):
        pre = ctx.code.pretrained.preprocessing()  # lesson 02: the weights' own preprocessing
        ctx = ctx.but(normalisation={**ctx.normalisation, "imagenet": {
            "mean": tuple(pre["mean"]), "std": tuple(pre["std"]),
            "by": f"lesson 02's preprocessing ({ctx.code.impl})"}})  # fmt: skip
    if dist.on:
        if ctx.profile.batch_size % dist.world_size:
            raise CourseError(f"the {ctx.profile.name} profile's global batch "
                              f"({ctx.profile.batch_size}) does not split evenly over "
                              f"{dist.world_size} processes")  # fmt: skip
        if any(not a.startswith("torch") for a in arms):
            print("under torchrun the torch arms train on every rank; the Keras arms run on "
                  "rank 0 afterwards, with tf.distribute over its visible GPUs")  # fmt: skip
    torch_s, keras_s, k_step = measure(ctx, runnable if dist.main else
                                       [a for a in runnable if a.startswith("torch")])  # fmt: skip
    ctx = ctx.but(torch_settings=dd.broadcast(dist, torch_s), keras_settings=keras_s)
    plan, costs = plan_arms(ctx, runnable, k_step) if dist.main else (None, ())
    ctx = with_plan(ctx, *dd.broadcast(dist, (plan, costs)))
    if ctx.plan is not None:
        ctx.plan.skipped = dict(skipped)
    # one process, a budget: the first arm's running steps are checked against the plan
    replanner = (cb.Replanner(ctx.plan, ctx.costs, ctx.started)
                 if ctx.plan is not None and options.budget_minutes is not None and not dist.on
                 else None)  # fmt: skip
    return ctx, skipped, replanner, provenance(ctx)


def _train_and_report(ctx: RunContext, skipped: dict, replanner, prov: dict) -> int:
    """Every arm in turn (or its result kept, with --resume), then the report."""
    from alexnet_course.compare.report import load_results, write_report

    options, dist, out, device = ctx.options, ctx.dist, ctx.options.out, ctx.device
    arms = list(options.arms)
    print(f"alexnet-course compare: profile {ctx.profile.name}, device {device}, "
          f"{prov['data_source']} ({len(ctx.data.train)} train / {len(ctx.data.val)} val / "
          f"{len(ctx.data.test)} test), implementation: {ctx.code.impl}")  # fmt: skip
    if dist.main:
        sample_grid(ctx, out / "samples.png")
    for arm in arms:
        if dist.on and arm.startswith("keras") and not dist.main:
            continue  # the Keras arms are rank 0's alone
        folder = out / arm
        if dist.main:
            folder.mkdir(exist_ok=True)
        done = finished(folder, ctx) if options.resume else None
        if done is not None:
            print(f"[{arm}] already finished in {folder} (--resume): kept")
            if replanner is not None:
                replanner.disarm()  # it ran under this plan: the plan is final
            continue
        t0 = time.perf_counter()
        if arm in skipped:
            res = {"arm": arm, "status": "skipped", "reason": skipped[arm]}
            print(f"[{arm}] skipped: {skipped[arm]}")
        else:
            res, ctx, prov = _run_arm(arm, ctx, folder, replanner, prov)
        res["wall_seconds"] = time.perf_counter() - t0
        if ctx.plan is not None:
            res["plan"] = ctx.plan.record()
        res["provenance"] = prov
        if not dist.main:
            continue
        if res["status"] == "ok" and replanner is not None:
            replanner.disarm()  # an arm has run under this plan: it is final
        tmp = folder / "results.json.tmp"
        tmp.write_text(json.dumps(res, indent=2))
        tmp.replace(folder / "results.json")
        if res["status"] == "ok":  # a finished arm's checkpoints serve no --resume: prune
            CheckpointSaver(folder).prune()
        release_memory()
    if not dist.main:
        return 0
    # every arm's results.json in the folder: this run's, and those of arms run earlier into
    # the same folder, which stay in the report
    report = write_report(load_results(out), out, ctx.data.classes, ctx.code.analysis,
                          ctx.code.impl)  # fmt: skip
    print(report)
    print(f"report: {public_path(out / 'report.md')} (figures and each arm's results.json "
          f"beside it)")  # fmt: skip
    return 0


def _run_arm(arm: str, ctx: RunContext, folder: Path, replanner, prov: dict):
    """Run one arm (again under a new plan when its first steps say so); returns its
    results, the context after it and the provenance."""
    from alexnet_course.device import seed_everything

    runner = run_keras_arm if arm.startswith("keras") else run_torch_arm
    seed_everything(ctx.options.seed, tensorflow=arm.startswith("keras") or None)
    try:
        res = runner(arm, ctx, folder, replanner.watch(arm) if replanner is not None else None)
        if isinstance(res, Restart):  # no arm has finished: this one starts afresh
            ctx = with_plan(ctx, res.plan)
            print(f"\n[{arm}] the plan is made again: {res.record['why']}\n"
                  f"{plan_mod.describe(ctx.plan)}\n[{arm}] starts afresh", flush=True)
            prov = provenance(ctx)
            CheckpointSaver(folder).prune()
            seed_everything(ctx.options.seed, tensorflow=arm.startswith("keras") or None)
            res = runner(arm, ctx, folder, None)
    except ArmSkipped as e:
        res = {"arm": arm, "status": "skipped", "reason": public_text(str(e))}
        print(f"[{arm}] skipped: {e}")
    except (KeyboardInterrupt, CourseError):
        raise
    except Exception as e:  # one arm's crash must not lose the others
        res = {"arm": arm, "status": "failed", "reason": public_text(f"{type(e).__name__}: {e}"),
               "traceback": public_text(traceback.format_exc()[-4000:])}  # fmt: skip
        print(f"[{arm}] failed: {type(e).__name__}: {e}")
    return res, ctx, prov
