"""The PyTorch arms: lesson 03's loop (``train_one_epoch``, ``evaluate``) over the run's
batches, with the settings measured for this machine, a checkpoint per epoch and the best
validation epoch's weights for the test."""

from __future__ import annotations

import math
import time
from pathlib import Path

from alexnet_course.compare import callbacks as cb
from alexnet_course.compare.checkpoints import CheckpointSaver
from alexnet_course.compare.models import arm_result, autocast_forward, lr_factor, new_history, torch_model
from alexnet_course.compare.settings import SGD_ARGS


class Restart:
    """What an arm returns instead of results when the :class:`.callbacks.Replanner` stopped
    its first epoch: the new plan, under which the runner starts the arm afresh."""

    def __init__(self, plan, record: dict) -> None:
        self.plan, self.record = plan, record


def progress(total: int, desc: str):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True,
                mininterval=1.0, file=sys.stdout)  # fmt: skip


def batches(ctx, split, *, mean, std, train: bool, channels_last: bool):
    """The run's batches of ``split``: the library's device-side pipeline, or lesson 01's own
    augmentation and preprocessing where :meth:`.LessonCode.fast_paths` found them different."""
    from alexnet_course.data.torch_pipeline import TorchBatches

    d, p = ctx.dist, ctx.profile
    lesson = ctx.code.data
    return TorchBatches(split, batch_size=p.batch_size, mean=mean, std=std, size=p.input_size,
                        train=train, seed=ctx.options.seed, device=ctx.device,
                        channels_last=channels_last, rank=d.rank, world_size=d.world_size,
                        augment_fn=None if ctx.pipeline.get("augment", "").startswith("library")
                        else lesson.augment,
                        preprocess_fn=None if ctx.pipeline.get("preprocess", "").startswith("library")
                        else lesson.preprocess)  # fmt: skip


def run_torch_arm(arm: str, ctx, folder: Path,
                  replanner: cb.Replanner | None = None) -> dict | Restart:  # fmt: skip
    """Train and test one torch arm; returns its results (:func:`.models.arm_result`), or a
    :class:`Restart` after its first epoch stopped for a new plan."""
    import torch

    from alexnet_course.compare import distributed as dd

    d, profile, data = ctx.dist, ctx.profile, ctx.data
    train = ctx.code.train
    model, mean, std, make_opt = torch_model(arm, ctx)
    if d.on:  # BatchNorm over the global batch (before the optimizer sees the parameters)
        model = dd.sync_batchnorm(model, ctx.device.type)
    model.to(ctx.device)
    settings = ctx.torch_settings
    cl = settings["channels_last"]
    if cl:
        model = model.to(memory_format=torch.channels_last)
    if settings.get("nnpack"):  # faster for lesson 03's model here: pick this model's layers
        settings = dict(settings, nnpack_arm_layers=_pick_nnpack(model, ctx, cl))
    tr = batches(ctx, data.train, mean=mean, std=std, train=True, channels_last=cl)
    va = batches(ctx, data.val, mean=mean, std=std, train=False, channels_last=cl)
    te = batches(ctx, data.test, mean=mean, std=std, train=False, channels_last=cl)
    if make_opt is not None:  # pretrained: the new head at lr, pretrained layers at lr / 10
        opt = make_opt(model, lr=profile.lr, backbone_lr=profile.lr / 10)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=profile.lr, **SGD_ARGS)
    epochs = ctx.epochs
    total = epochs * len(tr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, profile.warmup))
    history = new_history()
    start, best, best_state = 0, -math.inf, None
    saver = CheckpointSaver(folder, enabled=profile.checkpoints, writer=d.main)
    state = saver.load_torch(ctx.device, epochs) if ctx.options.resume else None
    if state is not None:
        torch.set_rng_state(state["rng"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, start = state["history"], state["epoch"] + 1
        best, best_state = state["best"], state["best_state"]
        print(f"  resumed after epoch {start} from {folder / 'checkpoint.pt'}")
    state = None  # the checkpoint read (a model, its momentum and the best weights) is loaded
    if settings.get("fused_sgd"):  # measured faster here (after a resume: its state is loaded)
        from alexnet_course.compare.settings import use_fused_sgd

        settings = dict(settings, fused_sgd=use_fused_sgd(opt))
    if settings["autocast"] == "bf16":
        autocast_forward(model)
    net = model  # the module itself: evaluation, state dicts, checkpoints
    model = dd.wrap(d, model, ctx.device)  # what trains: DDP under torchrun
    if settings.get("compile"):  # measured faster here (settings.measure_compile)
        model = torch.compile(model, backend=settings["compile"])
    from alexnet_course.compare.settings import ThreadWatch

    # on a CPU, the thread count follows the load (another process may take a core)
    watch = ThreadWatch() if ctx.device.type == "cpu" else None
    estimate = cb.LiveEstimate(arm, len(tr), epochs - start, start, ctx.plan)
    for epoch in range(start, epochs):
        tr.set_epoch(epoch)
        t0 = time.perf_counter()
        with progress(len(tr), f"{arm} epoch {epoch + 1}/{epochs}") as bar:
            steps = [*([replanner] if replanner is not None and epoch == 0 else []),
                     *([cb.Threads(watch)] if watch is not None else []),
                     cb.ScheduleStep(sched), cb.Progress(bar), estimate]  # fmt: skip
            loss, acc = train.train_one_epoch(model, cb.stepped(tr, steps, epoch), opt)
            # the last step's gradients are spent: not kept through validation and the best
            # weights' copy (#30)
            opt.zero_grad(set_to_none=True)
            if replanner is not None and replanner.new_plan is not None:
                return Restart(replanner.new_plan, replanner.record)
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
            best_state = None  # the last best's copy goes before the new one is made
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        saver.save_torch({"epoch": epoch, "epochs": epochs, "rng": torch.get_rng_state(),
                          "model": net.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "history": history, "best": best,
                          "best_state": best_state})  # fmt: skip
    if watch is not None:
        torch.set_num_threads(watch.start_threads)  # the next arm starts where this one did
    # training is over: its momentum buffers (a model's size) and the best weights' copy go
    # before the test, which then runs in the memory training needed, not on top of it (#30)
    opt.state.clear()
    net.load_state_dict(best_state)
    best_state = None
    result = dd.combine(d, train.evaluate(net, te, data.num_classes), te.shard_size())
    n_params = sum(p.numel() for p in net.parameters())
    n_train = sum(p.numel() for p in net.parameters() if p.requires_grad)
    res = arm_result(arm, result.accuracy, result.loss, result.per_class_accuracy,
                     result.confusion_matrix, history, len(data.train), n_params, n_train)
    res["settings"] = settings
    if watch is not None:
        res["threads"] = watch.record()
    res["distributed"] = d.record(profile.batch_size)
    return res


def _pick_nnpack(model, ctx, cl: bool) -> dict:
    """Measure which of this arm's convolutions NNPACK computes faster (at its batch and
    input size, in its memory format) and make them use it; rank 0's pick on every rank."""
    from alexnet_course.compare import convs
    from alexnet_course.compare import distributed as dd
    from alexnet_course.compare.settings import probe_batch

    x, _ = probe_batch(ctx.profile.batch_size, ctx.profile.input_size, ctx.device, channels_last=cl)
    picked = dd.broadcast(ctx.dist, convs.pick_layers(model, x))
    used = convs.apply(model, picked)
    print(f"  NNPACK convolutions in {len(used)} of {len(picked)} layers"
          + (f" ({', '.join(used)})" if used else ""), flush=True)
    return picked
