"""``alexnet-course compare``: run the reference solutions end to end on one profile.

Five arms, each built from the lessons' code (``solutions/`` by default, the learner's
``lessons/`` with ``--impl lessons``; the runner never re-implements a model):

* ``torch-scratch``: lesson 03's AlexNet (the paper's, with the profile's norm);
* ``torch-tv-scratch``: torchvision's architecture from random weights;
* ``torch-pretrained``: lesson 02's ImageNet AlexNet with a new head, fine-tuned with two
  learning rates (with ``torch-tv-scratch`` it isolates what pretraining alone buys);
* ``keras-scratch``: lesson 04's Keras AlexNet and training step;
* ``keras-pretrained``: torchvision's ImageNet weights ported into Keras by lesson 04.

Every arm gets the same data, split, augmentation, input size and epoch budget. Each epoch
ends with a checkpoint; ``--resume`` continues from the last one. An arm that cannot run
(no cached weights and no network, no TensorFlow) is reported as skipped with the reason,
and the other arms still run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from alexnet_course import CourseError
from alexnet_course.compare import plan as plan_mod
from alexnet_course.compare.profiles import ARMS, PROFILES, Profile
from alexnet_course.compare.settings import COMPILE_LIMIT_S, SGD_ARGS
from alexnet_course.provenance import common_record, public_path, public_text

LIVE_ESTIMATE_AFTER = 5  # batches: then each arm prints its expected time
# With --budget-minutes, the first arm's steps after the first REPLAN_STEPS[0] up to
# REPLAN_STEPS[1] (before the thread watch's first probe) are timed against the plan's step
REPLAN_STEPS = (2, 10)
REPLAN_TOLERANCE = 1.05  # slower than planned by more than this: the plan is made again
TRAIN_EVAL_IMAGES = 5000  # keras arms: training accuracy measured on this many training images
TRAIN_ACCURACY_KIND = {
    "torch": "running accuracy over the epoch's batches (training mode, augmented)",
    "keras": f"inference mode on the first {TRAIN_EVAL_IMAGES} training images, not augmented",
}
SEED_NOTEBOOK = {"torch-pretrained": 0.8218, "torch-scratch": 0.5893, "keras-scratch": 0.593}


class ArmSkipped(Exception):
    """An arm cannot run here; the message is the reason."""


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
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train the torch arms on N processes of this machine (one per GPU; "
                        "DistributedDataParallel): runs this command under torchrun "
                        "--standalone --nproc-per-node N")


def provenance(args, profile: Profile, data, device) -> dict:
    from alexnet_course.compare.settings import describe

    return {
        **common_record(device),
        "device": str(device),
        "allocator": getattr(args, "allocator", None) or "the C library's defaults",
        "precision": (f"{describe(args.torch_settings)} (torch arms)"
                      + (", fp32 (keras arms)" if "keras" in args.arms else "")
                      if args.torch_settings else "fp32"),
        "data_source": "synthetic (alexnet-course data synth)" if profile.synthetic
        else f"{args.data_label or 'CIFAR-10'} at {public_path(data.source)}",
        "data_sha256": data.checksum,
        "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test),
                  "val_seed": data.val_seed},
        "seed": args.seed,
        "impl": args.impl,
        "profile": asdict(profile),
    }  # fmt: skip


def _load_data(args, profile: Profile):
    from alexnet_course.data import load_cifar10, write_synthetic_cifar10

    if profile.synthetic:
        root = args.out / "synthetic-data"
        if not (root / "cifar-10-batches-py").is_dir():
            write_synthetic_cifar10(root, n_train=400, n_test=200, seed=args.seed)
        return load_cifar10(root, val_size=profile.val_size, seed=args.seed)
    return load_cifar10(args.data_dir, val_size=profile.val_size, seed=args.seed,
                        download=not args.no_download)  # fmt: skip


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True,
                mininterval=1.0, file=sys.stdout)  # fmt: skip


# ---------------------------------------------------------------- shared by all arms
def lr_factor(step: int, total: int, warmup: float) -> float:
    """The one learning-rate shape every arm follows, as a factor of its peak rate: linear
    warm-up from 1/25 of the peak over the first ``warmup`` share of the steps, then cosine
    decay to 0 (the shape of a one-cycle schedule, without momentum cycling)."""
    w = max(1, int(warmup * total))
    if step < w:
        return 0.04 + 0.96 * step / w
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


def scratch_torch_alexnet(profile: Profile, num_classes: int, impl: str):
    """Lesson 03's AlexNet with the profile's init. Both scratch arms call this right after
    seeding, so keras-scratch starts from the very weights torch-scratch starts from."""
    from torch import nn

    from alexnet_course.course import load_lesson_module

    alexnet = load_lesson_module("03_torch_scratch", "alexnet", impl)
    model = alexnet.AlexNet(num_classes=num_classes, norm=profile.norm)
    if profile.scratch_init == "pytorch-default":
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.reset_parameters()
    elif profile.scratch_init != "paper":
        raise CourseError(f"unknown scratch_init {profile.scratch_init!r}")
    return model


# ---------------------------------------------------------------- torch arms
def _torch_model(arm: str, profile: Profile, data, args):
    from alexnet_course.course import load_lesson_module
    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD

    k = data.num_classes
    if arm == "torch-scratch":
        model = scratch_torch_alexnet(profile, k, args.impl)
        return model, CIFAR10_MEAN, CIFAR10_STD, None
    if arm == "torch-tv-scratch":
        import torchvision
        from torch import nn

        model = torchvision.models.alexnet(num_classes=k)
        if profile.tv_scratch_init == "he":
            for layer in model.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
        return model, CIFAR10_MEAN, CIFAR10_STD, None
    pretrained = load_lesson_module("02_torch_pretrained", "pretrained", args.impl)
    _require_weights(pretrained.WEIGHTS, args)
    model = pretrained.build_model(num_classes=k, mode="finetune")
    return model, IMAGENET_MEAN, IMAGENET_STD, pretrained.make_optimizer


def _require_weights(weights, args) -> None:
    from alexnet_course.weights import WeightsError, ensure_weights

    try:
        ensure_weights(weights, download=not args.no_download)
    except WeightsError as e:
        raise ArmSkipped(str(e)) from None


def autocast_forward(model, dtype=None):
    """Run ``model``'s forward (and only it) under bf16 autocast, one region per call.

    One ``torch.autocast`` region around a whole epoch does not work: autocast caches the
    low-precision copies of the weights until the outermost region exits, so every step of
    the epoch would run the forward with the weights of the first step, and the network
    would not learn (this runner's first ``cpu`` run did exactly that). Wrapping the
    forward leaves the state dict and the lesson's training loop untouched.
    """
    import functools

    import torch

    device = next(model.parameters()).device
    inner = model.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16):
            return inner(*args, **kwargs)

    model.forward = forward
    return model


def run_torch_arm(arm: str, args, profile: Profile, data, device, folder: Path) -> dict:
    import torch

    from alexnet_course.compare import distributed as dd
    from alexnet_course.course import load_lesson_module
    from alexnet_course.data.torch_pipeline import TorchBatches

    d = args.dist
    train = load_lesson_module("03_torch_scratch", "train", args.impl)
    model, mean, std, make_opt = _torch_model(arm, profile, data, args)
    if d.on:  # BatchNorm over the global batch (before the optimizer sees the parameters)
        model = dd.sync_batchnorm(model, device.type)
    model.to(device)
    settings = args.torch_settings
    cl = settings["channels_last"]
    if cl:
        model = model.to(memory_format=torch.channels_last)
    if settings.get("nnpack"):  # faster for lesson 03's model here: pick this model's layers
        settings = dict(settings, nnpack_arm_layers=_pick_nnpack(model, profile, device, cl, d))
    kw = dict(batch_size=profile.batch_size, mean=mean, std=std, size=profile.input_size,
              seed=args.seed, device=device, channels_last=cl, rank=d.rank,
              world_size=d.world_size)  # fmt: skip
    tr = TorchBatches(data.train, train=True, **kw)
    va = TorchBatches(data.val, **kw)
    te = TorchBatches(data.test, **kw)
    if make_opt is not None:  # pretrained: the new head at lr, pretrained layers at lr / 10
        opt = make_opt(model, lr=profile.lr, backbone_lr=profile.lr / 10)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=profile.lr, **SGD_ARGS)
    epochs = _epochs(args, profile)
    total = epochs * len(tr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, profile.warmup))
    history = _new_history()
    start, best, best_state = 0, -math.inf, None
    ckpt = folder / "checkpoint.pt"
    if args.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state.get("epochs") != epochs:
            raise CourseError(f"{ckpt} was written by a {state.get('epochs')}-epoch run; resume "
                              f"with --epochs {state.get('epochs')} (or start afresh without "
                              "--resume)")  # fmt: skip
        torch.set_rng_state(state["rng"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
        best, best_state = state["best"], state["best_state"]
        print(f"  resumed after epoch {start} from {ckpt}")
    if settings.get("fused_sgd"):  # measured faster here (after a resume: its state is loaded)
        from alexnet_course.compare.settings import use_fused_sgd

        settings = dict(settings, fused_sgd=use_fused_sgd(opt))
    if settings["autocast"] == "bf16":
        autocast_forward(model)
    net = model  # the module itself: evaluation, state dicts, checkpoints
    model = dd.wrap(d, model, device)  # what trains: DDP under torchrun
    if settings.get("compile"):  # measured faster here (settings.measure_compile)
        model = torch.compile(model, backend=settings["compile"])
    from alexnet_course.compare.settings import ThreadWatch

    # on a CPU, the thread count follows the load (another process may take a core)
    watch = ThreadWatch() if device.type == "cpu" else None

    class Stepped:  # the schedule steps per batch; a progress bar shows live loss and accuracy
        def __init__(self, loader, bar):
            self.loader, self.bar = loader, bar

        def __iter__(self):
            t0 = time.perf_counter()
            if watch is not None:
                watch.restart()
            check = getattr(args, "replan_armed", False) and epoch == start == 0
            marks = {}
            for i, (x, y) in enumerate(self.loader, 1):
                yield x, y
                if check and i in REPLAN_STEPS:
                    marks[i] = _replan_clock()
                    if i == REPLAN_STEPS[1]:
                        a, b = REPLAN_STEPS
                        _check_plan(arm, args, (marks[b] - marks[a]) / (b - a))
                if watch is not None:
                    watch.tick()
                sched.step()
                self.bar.update(1)
                if i == LIVE_ESTIMATE_AFTER and epoch == start:
                    _live_estimate(arm, (time.perf_counter() - t0) / i, len(tr), epochs - start,
                                   args.plan)  # fmt: skip

    for epoch in range(start, epochs):
        tr.set_epoch(epoch)
        t0 = time.perf_counter()
        with _progress(len(tr), f"{arm} epoch {epoch + 1}/{epochs}") as bar:
            loss, acc = train.train_one_epoch(model, Stepped(tr, bar), opt)
            loss, acc = dd.combine_epoch(d, loss, acc, tr.shard_size())
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
            seconds = time.perf_counter() - t0
            ev = dd.combine(d, train.evaluate(net, va, data.num_classes), va.shard_size())
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", val_acc=f"{ev.accuracy:.3f}")
        for key, v in (("train_loss", loss), ("train_accuracy", acc), ("val_loss", ev.loss),
                       ("val_accuracy", ev.accuracy), ("epoch_seconds", seconds)):
            history[key].append(v)
        if ev.accuracy > best:
            best = ev.accuracy
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if not profile.checkpoints or not d.main:  # rank 0 alone writes
            continue
        torch.save({"epoch": epoch, "epochs": epochs, "rng": torch.get_rng_state(),
                    "model": net.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "history": history, "best": best,
                    "best_state": best_state}, ckpt.with_suffix(".tmp"))  # fmt: skip
        ckpt.with_suffix(".tmp").replace(ckpt)
    if watch is not None:
        torch.set_num_threads(watch.start_threads)  # the next arm starts where this one did
    net.load_state_dict(best_state)
    result = dd.combine(d, train.evaluate(net, te, data.num_classes), te.shard_size())
    n_params = sum(p.numel() for p in net.parameters())
    n_train = sum(p.numel() for p in net.parameters() if p.requires_grad)
    res = _result(arm, result.accuracy, result.loss, result.per_class_accuracy,
                  result.confusion_matrix, history, len(data.train), n_params, n_train)
    res["settings"] = settings
    if watch is not None:
        res["threads"] = watch.record()
    res["distributed"] = d.record(profile.batch_size)
    return res


def _pick_nnpack(model, profile: Profile, device, cl: bool, d) -> dict:
    """Measure which of this arm's convolutions NNPACK computes faster (at its batch and
    input size, in its memory format) and make them use it; rank 0's pick on every rank."""
    from alexnet_course.compare import convs
    from alexnet_course.compare import distributed as dd
    from alexnet_course.compare.settings import probe_batch

    x, _ = probe_batch(profile.batch_size, profile.input_size, device, channels_last=cl)
    picked = dd.broadcast(d, convs.pick_layers(model, x))
    used = convs.apply(model, picked)
    print(f"  NNPACK convolutions in {len(used)} of {len(picked)} layers"
          + (f" ({', '.join(used)})" if used else ""), flush=True)
    return picked


def torch_settings(args, profile: Profile, data, device) -> dict:
    """The torch arms' precision and memory format, measured once on lesson 03's model (see
    :mod:`alexnet_course.compare.settings`); every torch arm then trains with them."""
    from alexnet_course.compare import settings as st

    if not profile.tune and args.budget_minutes is None:
        return st.fixed_settings(device, bf16=profile.bf16 and not args.no_bf16,
                                 reason=f"profile {profile.name}: not measured")
    if not profile.tune:  # a budget needs a measured step; the profile's precision stays
        chosen = st.measure_settings(lambda: scratch_torch_alexnet(profile, data.num_classes,
                                                                   args.impl),
                                     device, batch_size=profile.batch_size,
                                     size=profile.input_size, allow_bf16=False,
                                     allow_nnpack=False, allow_fused_sgd=False, rounds=1)  # fmt: skip
        chosen.update(autocast=None, channels_last=False,
                      reason=f"profile {profile.name}: fp32, contiguous (measured for the budget)")
        chosen["chosen_step_seconds"] = chosen["step_seconds"]["fp32"]
        return chosen
    print("measuring training settings (precision, memory format, convolutions) on this "
          "machine ...")

    def make():
        return scratch_torch_alexnet(profile, data.num_classes, args.impl)

    chosen = st.measure_settings(make, device, batch_size=profile.batch_size,
                                 size=profile.input_size,
                                 allow_bf16=profile.bf16 and not args.no_bf16,
                                 allow_nnpack=not args.no_nnpack)  # fmt: skip
    if profile.try_compile and not args.no_compile:
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


# ---------------------------------------------------------------- keras arms
def run_keras_arm(arm: str, args, profile: Profile, data, device, folder: Path) -> dict:
    import numpy as np

    try:
        import keras
        import tensorflow as tf  # noqa: F401
    except ImportError as e:
        raise ArmSkipped(f"TensorFlow/Keras is not installed ({e})") from None
    from alexnet_course.compare import keras_distribute as kd
    from alexnet_course.course import load_lesson_module
    from alexnet_course.data.cifar10 import Split
    from alexnet_course.data.keras_pipeline import make_dataset

    kt = load_lesson_module("04_keras_scratch", "keras_train", args.impl)
    if arm == "keras-pretrained":
        import torchvision

        _require_weights(torchvision.models.AlexNet_Weights.IMAGENET1K_V1, args)
    epochs = _epochs(args, profile)
    steps = -(-len(data.train) // profile.batch_size)
    strategy = kd.strategy_for()  # MirroredStrategy over 2+ GPUs, else one replica
    with strategy.scope():  # the model, optimizer and step live in the strategy's scope
        model, mean, std = _keras_model(arm, args, profile, data.num_classes)
        opt = keras.optimizers.SGD(_KerasSchedule(profile.lr, epochs * steps, profile.warmup),
                                   momentum=0.9, weight_decay=5e-4)  # fmt: skip
        step = kd.distributed_step(strategy, kt.make_train_step, model, opt)
        settings = dict(args.keras_settings or keras_fixed_settings("not measured"))
        if settings["jit_compile"] and strategy.num_replicas_in_sync > 1:
            settings.update(jit_compile=False, reason="no XLA: MirroredStrategy over "
                            f"{strategy.num_replicas_in_sync} replicas ({settings['reason']})")
        if settings["jit_compile"]:
            from alexnet_course.compare.settings import xla_step

            step = xla_step(step)
    k = data.num_classes
    kw = dict(batch_size=profile.batch_size, mean=mean, std=std, size=profile.input_size,
              seed=args.seed)  # fmt: skip
    tr = make_dataset(data.train, train=True, **kw)
    va = make_dataset(data.val, **kw)
    te = make_dataset(data.test, **kw)
    n_eval = min(len(data.train), TRAIN_EVAL_IMAGES)
    tr_eval = make_dataset(Split(data.train.images[:n_eval], data.train.labels[:n_eval]), **kw)
    tr_batches = kd.distribute(strategy, tr)
    history = _new_history()
    start, best = 0, -math.inf
    best_weights = None
    ckpt, best_path = folder / "checkpoint.weights.h5", folder / "best.weights.h5"
    state_file = folder / "checkpoint.json"
    if args.resume and state_file.is_file():
        state = json.loads(state_file.read_text())
        model.load_weights(ckpt)
        history, start, best = state["history"], state["epoch"] + 1, state["best"]
        opt.iterations.assign(start * steps)
        print(f"  resumed after epoch {start} from {ckpt}")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        with _progress(steps, f"{arm} epoch {epoch + 1}/{epochs}") as bar:
            for i, (x, y) in enumerate(tr_batches, 1):
                loss = float(step(x, y))
                n = min(profile.batch_size, len(data.train) - (i - 1) * profile.batch_size)
                total += loss * n
                seen += n
                bar.update(1)
                if i == LIVE_ESTIMATE_AFTER and epoch == start:
                    _live_estimate(arm, (time.perf_counter() - t0) / i, steps, epochs - start,
                                   args.plan)  # fmt: skip
                bar.set_postfix(loss=f"{total / seen:.3f}")
            seconds = time.perf_counter() - t0
            # lesson 04's step returns the loss only, so the training accuracy of the keras
            # arms is measured after the epoch, in inference mode, on a fixed subset of the
            # training images (no augmentation); the torch arms' is the running accuracy of
            # the epoch's augmented batches in training mode (results name which)
            train_acc = kt.evaluate_keras(model, tr_eval, k)["accuracy"]
            ev = kt.evaluate_keras(model, va, k)
            val_loss = float(np.mean([float(loss_fn(y, model(x, training=False)))
                                      for x, y in va]))  # fmt: skip
            bar.set_postfix(loss=f"{total / seen:.3f}", val_acc=f"{ev['accuracy']:.3f}")
        for key, v in (("train_loss", total / seen), ("train_accuracy", train_acc),
                       ("val_loss", val_loss), ("val_accuracy", ev["accuracy"]),
                       ("epoch_seconds", seconds)):
            history[key].append(v)
        if ev["accuracy"] > best:
            best = ev["accuracy"]
            best_weights = model.get_weights()
            if profile.checkpoints:
                model.save_weights(best_path)
        if profile.checkpoints:
            model.save_weights(ckpt)
            state_file.write_text(json.dumps({"epoch": epoch, "history": history, "best": best}))
    if best_weights is not None:
        model.set_weights(best_weights)
    else:  # resumed after the last epoch: the best is on disk
        model.load_weights(best_path)
    ev = kt.evaluate_keras(model, te, k)
    test_loss = float(np.mean([float(loss_fn(y, model(x, training=False))) for x, y in te]))
    n_train = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    res = _result(arm, ev["accuracy"], test_loss, ev["per_class_accuracy"],
                  ev["confusion_matrix"], history, len(data.train), n_train, n_train)
    res["settings"] = settings
    res["distributed"] = kd.describe(strategy) | {"global_batch": profile.batch_size}
    return res


def _keras_model(arm: str, args, profile: Profile, k: int):
    """The Keras arm's model from lesson 04, and the mean and std its inputs are normalised
    with: keras-scratch starts from torch-scratch's initial weights, ported;
    keras-pretrained from torchvision's ImageNet weights with a new head, ported."""
    import torch
    import torchvision

    from alexnet_course.course import load_lesson_module
    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD

    ka = load_lesson_module("04_keras_scratch", "keras_alexnet", args.impl)
    size = profile.input_size
    if arm == "keras-scratch":
        start_weights = scratch_torch_alexnet(profile, k, args.impl).eval()
        model = ka.build_alexnet(k, profile.norm, size)
        ka.port_torch_weights(start_weights, model)
        return model, CIFAR10_MEAN, CIFAR10_STD
    tv = torchvision.models.alexnet(weights=torchvision.models.AlexNet_Weights.IMAGENET1K_V1)
    tv.classifier[6] = torch.nn.Linear(4096, k)
    model = ka.build_torchvision_alexnet(k, size)
    ka.port_torch_weights(tv.eval(), model)
    return model, IMAGENET_MEAN, IMAGENET_STD


def _KerasSchedule(peak: float, total: int, warmup: float):
    """:func:`lr_factor` as a Keras schedule (built lazily: Keras loads only for Keras arms)."""
    import keras
    from keras import ops

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = ops.cast(step, "float32")
            w = float(max(1, int(warmup * total)))
            up = 0.04 + 0.96 * step / w
            t = ops.minimum(1.0, (step - w) / float(max(1, total - w)))
            down = 0.5 * (1.0 + ops.cos(math.pi * t))
            return peak * ops.where(step < w, up, down)

    return Schedule()


def _new_history() -> dict[str, list]:
    """Per-epoch curves, the same keys for every arm."""
    return {k: [] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                            "epoch_seconds")}  # fmt: skip


def _result(arm, accuracy, loss, per_class, confusion, history, n_train_images, params,
            trainable) -> dict:  # fmt: skip
    seconds = float(sum(history["epoch_seconds"]))
    epochs = len(history["epoch_seconds"])
    return {
        "arm": arm,
        "status": "ok",
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "per_class_accuracy": [float(v) for v in per_class],
        "confusion_matrix": [[int(c) for c in row] for row in confusion],
        "history": {k: [None if x is None else float(x) for x in v] for k, v in history.items()},
        "train_accuracy_kind": TRAIN_ACCURACY_KIND[arm.split("-")[0]],
        "train_seconds": seconds,
        "images_per_second": epochs * n_train_images / seconds if seconds else 0.0,
        "parameters": int(params),
        "trainable_parameters": int(trainable),
    }


def _sample_grid(args, data, path: Path) -> None:
    """A labelled grid of test images, drawn by lesson 01's ``show_batch``."""
    from alexnet_course.course import load_lesson_module
    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD

    try:
        lesson = load_lesson_module("01_data", "data", args.impl)
        x = lesson.preprocess(data.test.images[:32], CIFAR10_MEAN, CIFAR10_STD)
        lesson.show_batch(x, data.test.labels[:32], data.classes, path, CIFAR10_MEAN,
                          CIFAR10_STD)  # fmt: skip
    except (NotImplementedError, CourseError) as e:
        print(f"sample grid skipped: {e}")


# ---------------------------------------------------------------- time: estimate and budget
def _epochs(args, profile: Profile) -> int:
    if getattr(args, "plan", None) is not None:
        return args.plan.epochs
    return args.epochs or profile.epochs


class Replan(Exception):  # noqa: N818 - a signal, not an error
    """The first arm's steps ran slower than the plan's measured ones, so much that the run
    would not keep its budget: the plan is made again from the steps that ran, and the arm
    starts afresh under it (no arm has finished, so every arm still gets the same plan)."""

    def __init__(self, plan, record: dict):
        super().__init__(record["why"])
        self.plan, self.record = plan, record


def _replan_clock() -> float:
    return time.perf_counter()


def _check_plan(arm: str, args, step_seconds: float) -> None:
    """Compare the first arm's running step with its planned one; raise :class:`Replan` when
    the plan made again from the ratio (applied to every arm's steps) scales differently.
    Runs once per run; the outcome goes into the plan as ``check``."""
    import dataclasses

    args.replan_armed = False
    plan, costs = args.plan, args.plan_costs
    planned = next(c.step_seconds for c in costs if c.arm == arm)
    ratio = step_seconds / planned
    record = {"arm": arm, "steps": f"{REPLAN_STEPS[0] + 1}-{REPLAN_STEPS[1]}",
              "step_seconds": round(step_seconds, 4), "planned_step_seconds": round(planned, 4),
              "ratio": round(ratio, 3)}  # fmt: skip
    if ratio <= REPLAN_TOLERANCE:
        plan.check = dict(record, why="the steps ran as planned: the plan stands")
        return
    slower = [dataclasses.replace(c, step_seconds=c.step_seconds * ratio) for c in costs]
    try:
        new = plan_mod.make_plan(slower, epochs=plan.epochs_unscaled,
                                 n_train=plan.train_images_unscaled,
                                 budget_minutes=plan.budget_minutes,
                                 spent_seconds=time.perf_counter() - args.t_start)  # fmt: skip
    except ValueError as e:  # not even two batches fit now: run the plan, say so
        plan.check = dict(record, why=f"{ratio:.2f}x the planned step, and no plan fits the "
                          f"budget any more ({e}): the plan stands")  # fmt: skip
        print(f"\n[{arm}] warning: {plan.check['why']}", flush=True)
        return
    if (new.epochs, new.train_images) == (plan.epochs, plan.train_images):
        plan.check = dict(record, why=f"{ratio:.2f}x the planned step; the plan still fits")
        return
    record["why"] = (f"{ratio:.2f}x the planned step: made again from the steps that ran "
                     f"(every arm's measured step times {ratio:.2f}); epochs {plan.epochs} -> "
                     f"{new.epochs}, training images {plan.train_images} -> {new.train_images}")
    record["before"] = {"epochs": plan.epochs, "train_images": plan.train_images,
                        "estimated_total_seconds": round(plan.estimated_total_seconds, 1)}
    new.check = record
    raise Replan(new, record)


def _live_estimate(arm: str, step_s: float, steps: int, epochs: int, plan) -> None:
    left = step_s * steps * epochs * (1 + 0.15)  # evaluation passes: ~15% on top
    planned = plan.estimated_seconds.get(arm) if plan is not None else None
    note = f" (planned ~{planned / 60:.1f} min)" if planned else ""
    print(f"\n[{arm}] {1 / step_s:.2f} batch/s after {LIVE_ESTIMATE_AFTER} batches: this arm "
          f"needs ~{left / 60:.1f} min more{note}", flush=True)


def _runnable(arm: str, args) -> bool:
    """Whether ``arm`` will run (not be skipped for missing weights or TensorFlow)."""
    import importlib.util

    if arm.startswith("keras") and importlib.util.find_spec("tensorflow") is None:
        return False
    if arm.endswith("pretrained") and args.no_download:
        import torchvision

        from alexnet_course.weights import cached_path

        return cached_path(torchvision.models.AlexNet_Weights.IMAGENET1K_V1).is_file()
    return True


def keras_fixed_settings(reason: str) -> dict:
    return {"jit_compile": False, "step_seconds": {}, "reason": f"as written (no XLA): {reason}"}


def _keras_probe(args, profile: Profile, data):
    """What a Keras step measurement needs: a builder of lesson 04's model, its
    ``make_train_step`` and one random batch at the profile's shape."""
    import numpy as np

    from alexnet_course.course import load_lesson_module

    ka = load_lesson_module("04_keras_scratch", "keras_alexnet", args.impl)
    kt = load_lesson_module("04_keras_scratch", "keras_train", args.impl)
    rng = np.random.default_rng(0)
    x = rng.random((profile.batch_size, profile.input_size, profile.input_size, 3), np.float32)
    y = rng.integers(0, data.num_classes, profile.batch_size)
    return (lambda: ka.build_alexnet(data.num_classes, profile.norm, profile.input_size),
            kt.make_train_step, x, y)  # fmt: skip


def keras_settings(args, profile: Profile, data) -> dict:
    """The Keras arms' step: as lesson 04 wrote it, or compiled whole with XLA, measured
    once on lesson 04's model (:func:`alexnet_course.compare.settings.measure_keras_settings`)."""
    from alexnet_course.compare.settings import measure_keras_settings

    if not profile.tune:
        return keras_fixed_settings(f"profile {profile.name}: not measured")
    print("measuring the Keras training step, as written and under XLA ...")
    chosen = measure_keras_settings(*_keras_probe(args, profile, data))
    print(f"  {chosen['reason']}")
    return chosen


def _keras_step(args, profile: Profile, data) -> float:
    """One training step of lesson 04's Keras AlexNet, measured (the Keras arms' rate)."""
    import keras

    make_model, make_train_step, x, y = _keras_probe(args, profile, data)
    opt = keras.optimizers.SGD(1e-4, momentum=0.9)
    return plan_mod.keras_step_seconds(make_model(), opt, make_train_step, x, y)


def _batch_seconds(profile: Profile, data, device, args, batches: int = 3) -> float:
    """Seconds the torch arms' input pipeline spends on one training batch (crop, flip,
    resize, normalise), which the measured training step leaves out."""
    from alexnet_course.data import CIFAR10_MEAN, CIFAR10_STD
    from alexnet_course.data.torch_pipeline import TorchBatches

    cl = bool((args.torch_settings or {}).get("channels_last"))
    it = iter(TorchBatches(data.train, batch_size=profile.batch_size, mean=CIFAR10_MEAN,
                           std=CIFAR10_STD, size=profile.input_size, train=True, seed=0,
                           device=device, channels_last=cl))  # fmt: skip
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


def plan_arms(args, profile: Profile, data, device, arms: list[str], started: float):
    """Estimate every runnable arm's time from measured steps; with ``--budget-minutes``,
    scale the epochs (then the training images) of every arm alike to fit it."""
    ts = args.torch_settings or {}
    torch_step = ts.get("chosen_step_seconds")
    if torch_step is None:
        return None
    runnable = [a for a in arms if _runnable(a, args)]
    torch_step += _batch_seconds(profile, data, device, args)  # the input pipeline's share
    steps = {a: torch_step for a in runnable if a.startswith("torch")}
    # each torch arm compiles its own model once (the measurement compiled lesson 03's)
    setup = {a: ts["compile_seconds"] for a in steps} if ts.get("compile") else {}
    keras_arms = [a for a in runnable if a.startswith("keras")]
    if keras_arms:
        k = (args.keras_settings or {}).get("chosen_step_seconds")
        if k is None:
            print("measuring a Keras training step ...")
            k = _keras_step(args, profile, data)
        steps.update({a: k for a in keras_arms})
    costs = plan_mod.arm_costs(runnable, steps, n_train=len(data.train), n_val=len(data.val),
                               n_test=len(data.test), batch_size=profile.batch_size,
                               keras_train_eval=min(len(data.train), TRAIN_EVAL_IMAGES),
                               setup_seconds=setup)  # fmt: skip
    try:
        plan = plan_mod.make_plan(costs, epochs=args.epochs or profile.epochs,
                                  n_train=len(data.train), budget_minutes=args.budget_minutes,
                                  spent_seconds=time.perf_counter() - started)  # fmt: skip
    except ValueError as e:
        raise CourseError(str(e)) from None
    print(plan_mod.describe(plan), flush=True)
    args.plan_costs = costs  # for the check against the first arm's running steps
    return plan


def _fewer_training_images(data, n: int, seed: int):
    """The same ``n`` training images for every arm: a seeded draw, each class kept in its
    share (a stratified subset)."""
    import dataclasses

    import numpy as np

    from alexnet_course.data.cifar10 import Split

    rng = np.random.default_rng(seed)
    labels = data.train.labels
    perm = rng.permutation(len(labels))
    rank = np.empty(len(labels))  # position within its class, as a share of the class
    for c in np.unique(labels):
        idx = perm[labels[perm] == c]
        rank[idx] = (np.arange(len(idx)) + 0.5) / len(idx)
    keep = np.sort(np.argsort(rank, kind="stable")[:n])
    return dataclasses.replace(data, train=Split(data.train.images[keep], labels[keep]))


CHECKPOINT_FILES = ("checkpoint.pt", "checkpoint.weights.h5", "best.weights.h5", "checkpoint.json",
                    "checkpoint.tmp")  # fmt: skip


def _finished(folder: Path, args, profile: Profile) -> dict | None:
    """The results of an arm that already finished in ``folder`` with the same epochs (for
    ``--resume``); ``None`` when it must (re)run."""
    path = folder / "results.json"
    if not path.is_file() or any((folder / n).exists() for n in CHECKPOINT_FILES):
        return None
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return None
    if old.get("status") != "ok":
        return None
    ran = len(old["history"]["val_accuracy"])
    if ran != _epochs(args, profile):
        raise CourseError(f"{path} holds a finished {ran}-epoch run; resume with --epochs {ran} "
                          "(or start afresh without --resume)")  # fmt: skip
    return old


# ---------------------------------------------------------------- the command
def run_compare(args: argparse.Namespace) -> int:
    """The command; under torchrun every rank runs it, and rank 0 alone prints and writes."""
    from alexnet_course.compare import distributed as dd
    from alexnet_course.device import pick_device

    device = pick_device()
    args.dist = dd.setup(device.type)
    if args.dist.on and device.type == "cuda":
        import torch

        device = torch.device("cuda", args.dist.local_rank)  # one GPU per rank
    finished = False
    try:
        with dd.quiet_unless_main(args.dist):
            rc = _run_compare(args, device)
        finished = True
        return rc
    finally:
        dd.teardown(args.dist, finished=finished)


def _run_compare(args: argparse.Namespace, device) -> int:
    import torch

    from alexnet_course.compare import distributed as dd
    from alexnet_course.compare.report import load_results, write_report
    from alexnet_course.course import course_root
    from alexnet_course.device import seed_everything

    name = args.profile or ("gpu" if torch.cuda.is_available() else "cpu")
    profile = PROFILES[name]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise CourseError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.impl is None:
        args.impl = "solutions" if (course_root() / "solutions").is_dir() else "lessons"
    d = args.dist
    if name == "gpu" and device.type != "cuda":
        raise CourseError("--profile gpu needs a CUDA GPU; none was found (use --profile cpu)")
    made = [p for p in (args.out, *args.out.parents) if not p.exists()]
    from alexnet_course.compare.settings import keep_freed_memory

    # 1.04x to 1.19x per training step on glibc (`bench`'s +heap); it cannot be undone in a
    # process, so it is not measured here against the default, as the other settings are
    args.allocator = keep_freed_memory()
    t_start = time.perf_counter()
    seed_everything(args.seed)
    with dd.main_first(d):  # rank 0 writes generated data or downloads; then the others read
        if d.main:
            args.out.mkdir(parents=True, exist_ok=True)
        try:
            data = _load_data(args, profile)
        except CourseError:
            from alexnet_course.data.cifar10 import remove_empty

            remove_empty(made)  # leave nothing behind
            raise
    if profile.train_limit is not None and profile.train_limit < len(data.train):
        data = _fewer_training_images(data, profile.train_limit, args.seed)
    if d.on:
        if profile.batch_size % d.world_size:
            raise CourseError(f"the {name} profile's global batch ({profile.batch_size}) does "
                              f"not split evenly over {d.world_size} processes")  # fmt: skip
        arms_here = [a for a in arms if a.startswith("torch")]
        if arms_here != arms:
            print("under torchrun the torch arms train on every rank; the Keras arms run on "
                  "rank 0 afterwards, with tf.distribute over its visible GPUs")  # fmt: skip
    args.torch_settings = None
    if any(a.startswith("torch") for a in arms):  # measured on each rank, rank 0's is used
        args.torch_settings = dd.broadcast(d, torch_settings(args, profile, data, device))
    args.keras_settings = None
    if d.main and any(a.startswith("keras") and _runnable(a, args) for a in arms):
        args.keras_settings = keras_settings(args, profile, data)
    plan = plan_arms(args, profile, data, device, arms, started=t_start) if d.main else None
    args.plan = dd.broadcast(d, plan)
    # one process, a budget: the first arm's running steps are checked against the plan
    args.t_start = t_start
    args.replan_armed = args.plan is not None and args.budget_minutes is not None and not d.on
    all_data = data
    if args.plan is not None and args.plan.train_images < len(data.train):
        data = _fewer_training_images(data, args.plan.train_images, args.seed)
    prov = provenance(args, profile, data, device)
    print(f"alexnet-course compare: profile {name}, device {device}, {prov['data_source']} "
          f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test), "
          f"implementation: {args.impl}")  # fmt: skip
    if d.main:
        _sample_grid(args, data, args.out / "samples.png")
    results = []
    for arm in arms:
        if d.on and arm.startswith("keras") and not d.main:
            continue  # the Keras arms are rank 0's alone
        folder = args.out / arm
        if d.main:
            folder.mkdir(exist_ok=True)
        done = _finished(folder, args, profile) if args.resume else None
        if done is not None:
            print(f"[{arm}] already finished in {folder} (--resume): kept")
            args.replan_armed = False  # it ran under this plan: the plan is final
            results.append(done)
            continue
        seed_everything(args.seed, tensorflow=arm.startswith("keras") or None)
        t0 = time.perf_counter()
        try:
            runner = run_keras_arm if arm.startswith("keras") else run_torch_arm
            try:
                res = runner(arm, args, profile, data, device, folder)
            except Replan as e:  # no arm has finished: this one starts afresh under the new plan
                args.plan = e.plan
                print(f"\n[{arm}] the plan is made again: {e.record['why']}\n"
                      f"{plan_mod.describe(args.plan)}\n[{arm}] starts afresh", flush=True)
                data = all_data
                if args.plan.train_images < len(data.train):
                    data = _fewer_training_images(data, args.plan.train_images, args.seed)
                prov = provenance(args, profile, data, device)
                for name in CHECKPOINT_FILES:
                    (folder / name).unlink(missing_ok=True)
                seed_everything(args.seed)
                t0 = time.perf_counter()
                res = runner(arm, args, profile, data, device, folder)
        except ArmSkipped as e:
            res = {"arm": arm, "status": "skipped", "reason": public_text(str(e))}
            print(f"[{arm}] skipped: {e}")
        except (KeyboardInterrupt, CourseError):
            raise
        except Exception as e:  # one arm's crash must not lose the others
            res = {"arm": arm, "status": "failed",
                   "reason": public_text(f"{type(e).__name__}: {e}"),
                   "traceback": public_text(traceback.format_exc()[-4000:])}  # fmt: skip
            print(f"[{arm}] failed: {type(e).__name__}: {e}")
        res["wall_seconds"] = time.perf_counter() - t0
        if args.plan is not None:
            res["plan"] = args.plan.record()
        res["provenance"] = prov
        if not d.main:
            continue
        if res["status"] == "ok":
            args.replan_armed = False  # an arm has run under this plan: it is final
        tmp = folder / "results.json.tmp"
        tmp.write_text(json.dumps(res, indent=2))
        tmp.replace(folder / "results.json")
        if res["status"] == "ok":  # a finished arm's checkpoints serve no --resume: prune
            for name in CHECKPOINT_FILES:
                (folder / name).unlink(missing_ok=True)
        results.append(res)
    if not d.main:
        return 0
    # every arm's results.json in the folder: this run's, and those of arms run earlier into
    # the same folder, which stay in the report
    report = write_report(load_results(args.out), args.out, data.classes)
    print(report)
    return 0
