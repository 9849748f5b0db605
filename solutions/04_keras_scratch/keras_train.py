"""Training AlexNet in Keras: a custom step with ``tf.GradientTape``, the same through
``model.fit`` with callbacks, and an evaluation that counts every sample.

The seed notebook's Keras mistakes are this file's lessons: its learning-rate schedule
``lr / (epoch + 1)`` compounded when applied to the current rate every epoch, and its
ModelCheckpoint monitored TRAINING accuracy. Here the schedule is a pure function of the
epoch and the checkpoint monitors validation accuracy.
"""

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
        ### BEGIN SOLUTION 4.6
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
        ### END SOLUTION 4.6

    return step


def lr_schedule(initial_lr: float, drop: float = 0.5, every: int = 10) -> Callable[[int], float]:
    """Task 4.7: step decay as a pure function of the epoch:
    ``initial_lr * drop ** (epoch // every)``. (Keras's LearningRateScheduler also passes the
    current rate; ignoring it is what keeps the schedule from compounding.)"""
    ### BEGIN SOLUTION 4.7
    def schedule(epoch: int, lr: float | None = None) -> float:
        return float(initial_lr * drop ** (epoch // every))

    return schedule
    ### END SOLUTION 4.7


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
    ### BEGIN SOLUTION 4.7
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.LearningRateScheduler(lr_schedule(lr, every=drop_every)),
        keras.callbacks.ModelCheckpoint(checkpoint_path, monitor="val_accuracy", mode="max",
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience,
                                      restore_best_weights=True),
    ]  # fmt: skip
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                        verbose=0)  # fmt: skip
    return history.history
    ### END SOLUTION 4.7


def evaluate_keras(model: keras.Model, ds, num_classes: int) -> dict:
    """Task 4.8: accuracy, per-class accuracy and confusion matrix over EVERY sample of
    ``ds`` (batches of ``(x, y)``), with the model in inference mode (``training=False``).

    Returns:
        ``{"accuracy": float, "per_class_accuracy": (C,) array (NaN for a class with no
        sample), "confusion_matrix": (C, C) int array, rows = true class, columns =
        predicted}``.
    """
    ### BEGIN SOLUTION 4.8
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for x, y in ds:
        pred = np.argmax(model(x, training=False), axis=1)
        np.add.at(cm, (np.asarray(y), pred), 1)
    rows = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(rows > 0, np.diag(cm) / rows, np.nan)
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
            "per_class_accuracy": per_class, "confusion_matrix": cm}  # fmt: skip
    ### END SOLUTION 4.8
