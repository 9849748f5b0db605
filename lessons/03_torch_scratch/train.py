"""The training loop, in three functions: one epoch of training, evaluation, and ``fit``.

The seed notebook's bugs are this file's lessons: its per-class accuracy counted only the
first 4 images of each batch (``evaluate`` counts every sample), and it checkpointed on
training accuracy (``fit`` keeps the best model by validation accuracy).
"""
# Your file for lesson 03_torch_scratch: fill in every TODO, then run `pytest lessons/03_torch_scratch`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass
class Evaluation:
    """What :func:`evaluate` measures over every sample of a loader."""

    loss: float
    accuracy: float
    per_class_accuracy: np.ndarray  # (C,), NaN for a class with no sample
    confusion_matrix: np.ndarray  # (C, C) int64: rows are true labels, columns predictions


@dataclass
class History:
    """Per-epoch curves from :func:`fit`, and which epoch was kept."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_accuracy: float = -math.inf


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable | None = None,
) -> tuple[float, float]:
    """Task 3.8: one pass over ``loader`` in training mode: every batch, on the model's
    device, makes one optimizer step from the gradient of its own loss.

    Args:
        model: the network; it returns logits.
        loader: yields ``(images, labels)`` batches.
        optimizer: updates ``model``'s parameters.
        loss_fn: defaults to ``nn.CrossEntropyLoss()`` (which takes logits, not softmax).

    Returns:
        ``(mean loss per sample, accuracy)`` over the epoch.
    """
    # TODO: Task 3.8 -- see docs/lessons/03_torch_scratch.md#task-3-8
    raise NotImplementedError("Task 3.8 not started (docs/lessons/03_torch_scratch.md#task-3-8)")


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, num_classes: int, loss_fn: Callable | None = None
) -> Evaluation:
    """Task 3.9: loss, accuracy, per-class accuracy and confusion matrix over EVERY sample.

    The model runs in evaluation mode (dropout off, BatchNorm's running statistics) and
    without gradients. ``confusion_matrix[t, p]`` counts samples of true class t predicted
    as p; per-class accuracy is its diagonal over its row sums.
    """
    # TODO: Task 3.9 -- see docs/lessons/03_torch_scratch.md#task-3-9
    raise NotImplementedError("Task 3.9 not started (docs/lessons/03_torch_scratch.md#task-3-9)")


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    num_classes: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: Callable | None = None,
    checkpoint_path: str | Path | None = None,
    on_epoch_end: Callable[[int, History], None] | None = None,
) -> History:
    """Task 3.10: train for ``epochs`` epochs and keep the best model by VALIDATION accuracy.

    Each epoch trains (:func:`train_one_epoch`) and evaluates on ``val_loader``
    (:func:`evaluate`); the history records the learning rate each epoch trained with; the
    scheduler steps once per epoch. When validation accuracy beats the best so far, the
    checkpoint ``{"epoch", "val_accuracy", "model"}`` (the state dict) goes to
    ``checkpoint_path``. After the last epoch ``model`` holds the best weights.

    Returns:
        The :class:`History` of losses, accuracies and learning rates per epoch.
    """
    # TODO: Task 3.10 -- see docs/lessons/03_torch_scratch.md#task-3-10
    raise NotImplementedError("Task 3.10 not started (docs/lessons/03_torch_scratch.md#task-3-10)")
