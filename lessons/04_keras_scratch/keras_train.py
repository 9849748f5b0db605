"""Training AlexNet in Keras: a custom step with ``tf.GradientTape``, the same through
``model.fit`` with callbacks, and an evaluation that counts every sample.

The seed notebook's Keras mistakes are this file's lessons: its learning-rate schedule
``lr / (epoch + 1)`` compounded when applied to the current rate every epoch, and its
ModelCheckpoint monitored TRAINING accuracy. Here the schedule is a pure function of the
epoch and the checkpoint monitors validation accuracy.
"""
# Your file for lesson 04_keras_scratch: fill in every TODO, then run `pytest lessons/04_keras_scratch`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                    loss_fn: keras.losses.Loss | None = None) -> Callable:  # fmt: skip
    """Task 4.6: a compiled training step ``step(x, y) -> loss``: one update of the model's
    trainable variables with ``optimizer``, from the gradient of the batch's loss (on the
    logits; sparse categorical cross-entropy by default), the model in TRAINING mode
    (dropout on, BatchNorm on batch statistics).
    """
    loss_fn = loss_fn or keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        # TODO: Task 4.6 -- see docs/lessons/04_keras_scratch.md#task-4-6
        raise NotImplementedError("Task 4.6 not started (docs/lessons/04_keras_scratch.md#task-4-6)")

    return step


def lr_schedule(initial_lr: float, drop: float = 0.5, every: int = 10) -> Callable[[int], float]:
    """Task 4.7: step decay as a pure function of the epoch:
    ``initial_lr * drop ** (epoch // every)``. (Keras's LearningRateScheduler also passes the
    current rate; ignoring it is what keeps the schedule from compounding.)"""
    # TODO: Task 4.7 -- see docs/lessons/04_keras_scratch.md#task-4-7
    raise NotImplementedError("Task 4.7 not started (docs/lessons/04_keras_scratch.md#task-4-7)")


def fit_keras(model: keras.Model, train_ds, val_ds, *, epochs: int, lr: float,
              checkpoint_path: str, patience: int = 5, drop_every: int = 10) -> dict:  # fmt: skip
    """Task 4.7: compile (SGD with momentum 0.9, cross-entropy on logits, accuracy) and fit,
    with callbacks for the learning-rate schedule (:func:`lr_schedule`, every ``drop_every``
    epochs), a weights-only checkpoint at ``checkpoint_path`` whenever VALIDATION accuracy
    improves, and early stopping on validation accuracy after ``patience`` epochs that
    leaves the best epoch's weights in ``model``.

    Returns:
        ``history.history`` (per-epoch "loss", "accuracy", "val_loss", "val_accuracy",
        "learning_rate").
    """
    # TODO: Task 4.7 -- see docs/lessons/04_keras_scratch.md#task-4-7
    raise NotImplementedError("Task 4.7 not started (docs/lessons/04_keras_scratch.md#task-4-7)")


def evaluate_keras(model: keras.Model, ds, num_classes: int) -> dict:
    """Task 4.8: accuracy, per-class accuracy and confusion matrix over EVERY sample of
    ``ds`` (batches of ``(x, y)``), with the model in inference mode (``training=False``).

    Returns:
        ``{"accuracy": float, "per_class_accuracy": (C,) array (NaN for a class with no
        sample), "confusion_matrix": (C, C) int array, rows = true class, columns =
        predicted}``.
    """
    # TODO: Task 4.8 -- see docs/lessons/04_keras_scratch.md#task-4-8
    raise NotImplementedError("Task 4.8 not started (docs/lessons/04_keras_scratch.md#task-4-8)")
