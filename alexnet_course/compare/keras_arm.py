"""The Keras arms: lesson 04's model and training step over the run's ``tf.data`` batches,
lesson 04's evaluation, a checkpoint per epoch and the best validation epoch's weights for
the test."""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path

from alexnet_course.compare import callbacks as cb
from alexnet_course.compare.checkpoints import CheckpointSaver
from alexnet_course.compare.models import (
    TRAIN_EVAL_IMAGES,
    ArmSkipped,
    arm_result,
    keras_model,
    keras_schedule,
    new_history,
    require_weights,
)
from alexnet_course.compare.torch_arm import Restart, progress


def keras_fixed_settings(reason: str) -> dict:
    return {"jit_compile": False, "step_seconds": {}, "reason": f"as written (no XLA): {reason}"}


def run_keras_arm(arm: str, ctx, folder: Path,
                  replanner: cb.Replanner | None = None) -> dict | Restart:  # fmt: skip
    """Train and test one Keras arm; returns its results, or a :class:`.torch_arm.Restart`
    after its first epoch stopped for a new plan."""
    import numpy as np

    try:
        import keras
        import tensorflow as tf  # noqa: F401
    except ImportError as e:
        raise ArmSkipped(f"TensorFlow/Keras is not installed ({e})") from None
    from alexnet_course.compare import keras_distribute as kd
    from alexnet_course.compare.keras_sgd import keras_sgd
    from alexnet_course.compare.settings import SGD_ARGS
    from alexnet_course.data.cifar10 import Split
    from alexnet_course.data.keras_pipeline import make_dataset

    profile, data = ctx.profile, ctx.data
    kt = ctx.code.keras_train
    if arm == "keras-pretrained":
        import torchvision

        require_weights(torchvision.models.AlexNet_Weights.IMAGENET1K_V1, not ctx.options.no_download)
    epochs = ctx.epochs
    steps = -(-len(data.train) // profile.batch_size)
    strategy = kd.strategy_for()  # MirroredStrategy over 2+ GPUs, else one replica
    with strategy.scope():  # the model, optimizer and step live in the strategy's scope
        model, mean, std = keras_model(arm, ctx)
        opt = keras_sgd(keras_schedule(profile.lr, epochs * steps, profile.warmup),
                        replicas=strategy.num_replicas_in_sync, **SGD_ARGS)  # fmt: skip
        step = kd.distributed_step(strategy, kt.make_train_step, model, opt)
        settings = dict(ctx.keras_settings or keras_fixed_settings("not measured"))
        if settings["jit_compile"] and strategy.num_replicas_in_sync > 1:
            settings.update(jit_compile=False, reason="no XLA: MirroredStrategy over "
                            f"{strategy.num_replicas_in_sync} replicas ({settings['reason']})")
        if settings["jit_compile"]:
            from alexnet_course.compare.settings import xla_step

            step = xla_step(step)
    k = data.num_classes
    prep, prep_record = ctx.code.keras_fast_path()
    kw = dict(batch_size=profile.batch_size, mean=mean, std=std, size=profile.input_size,
              seed=ctx.options.seed, preprocess_fn=prep)  # fmt: skip
    tr = make_dataset(data.train, train=True, **kw)
    va = make_dataset(data.val, **kw)
    te = make_dataset(data.test, **kw)
    n_eval = min(len(data.train), TRAIN_EVAL_IMAGES)
    tr_eval = make_dataset(Split(data.train.images[:n_eval], data.train.labels[:n_eval]), **kw)
    tr_batches = kd.distribute(strategy, tr)
    history = new_history()
    start, best = 0, -math.inf
    saver = CheckpointSaver(folder, enabled=profile.checkpoints)
    state = saver.load_keras(model) if ctx.options.resume else None
    if state is not None:
        history, start, best = state["history"], state["epoch"] + 1, state["best"]
        opt.iterations.assign(start * steps)
        print(f"  resumed after epoch {start} from {folder / 'checkpoint.weights.h5'}")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    estimate = cb.LiveEstimate(arm, steps, epochs - start, start, ctx.plan)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        with progress(steps, f"{arm} epoch {epoch + 1}/{epochs}") as bar:
            calls = [*([replanner] if replanner is not None and epoch == 0 else []),
                     cb.Progress(bar), estimate]  # fmt: skip
            for i, (x, y) in enumerate(cb.stepped(tr_batches, calls, epoch), 1):
                loss = float(step(x, y))
                n = min(profile.batch_size, len(data.train) - (i - 1) * profile.batch_size)
                total += loss * n
                seen += n
                bar.set_postfix(loss=f"{total / seen:.3f}")
            if replanner is not None and replanner.new_plan is not None:
                return Restart(replanner.new_plan, replanner.record)
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
        is_best = ev["accuracy"] > best
        if is_best:
            best = ev["accuracy"]
        saver.save_keras(model, epoch, history, best, is_best)
    # training is over: its optimizer's momentum (a model's size) goes before the best
    # weights are read back and tested, which then run in the memory training needed (#30);
    # a traced step holds its variables in reference cycles, hence the collection
    del step, opt
    gc.collect()
    saver.load_keras_best(model)  # the best epoch's weights, kept on disk
    ev = kt.evaluate_keras(model, te, k)
    test_loss = float(np.mean([float(loss_fn(y, model(x, training=False))) for x, y in te]))
    n_train = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    res = arm_result(arm, ev["accuracy"], test_loss, ev["per_class_accuracy"],
                     ev["confusion_matrix"], history, len(data.train), n_train, n_train)
    res["settings"] = settings
    res["pipeline"] = {"preprocess": prep_record, "augment": "library (tf.data: lesson 01 "
                       "teaches no Keras augmentation)"}  # fmt: skip
    res["distributed"] = kd.describe(strategy) | {"global_batch": profile.batch_size}
    return res
