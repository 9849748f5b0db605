"""The training loop, in three functions: one epoch of training, evaluation, and ``fit``.

The seed notebook's bugs are this file's lessons: its per-class accuracy counted only the
first 4 images of each batch (``evaluate`` counts every sample), and it checkpointed on
training accuracy (``fit`` keeps the best model by validation accuracy).
"""

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
    ### BEGIN SOLUTION 3.8
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = model_device(model)
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = loss_fn(logits, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    return total_loss / max(seen, 1), correct / max(seen, 1)
    ### END SOLUTION 3.8


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, num_classes: int, loss_fn: Callable | None = None
) -> Evaluation:
    """Task 3.9: loss, accuracy, per-class accuracy and confusion matrix over EVERY sample.

    The model runs in evaluation mode (dropout off, BatchNorm's running statistics) and
    without gradients. ``confusion_matrix[t, p]`` counts samples of true class t predicted
    as p; per-class accuracy is its diagonal over its row sums.
    """
    ### BEGIN SOLUTION 3.9
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = model_device(model)
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    total_loss, seen = 0.0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        total_loss += loss_fn(logits, labels).item() * len(labels)
        seen += len(labels)
        pairs = labels.cpu() * num_classes + logits.argmax(1).cpu()
        confusion += torch.bincount(pairs, minlength=num_classes**2).view(num_classes, -1)
    cm = confusion.numpy()
    rows = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(rows > 0, np.diag(cm) / rows, np.nan)
    return Evaluation(
        loss=total_loss / max(seen, 1),
        accuracy=float(np.trace(cm) / max(seen, 1)),
        per_class_accuracy=per_class,
        confusion_matrix=cm,
    )
    ### END SOLUTION 3.9


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
    ### BEGIN SOLUTION 3.10
    history = History()
    best_state = None
    for epoch in range(epochs):
        history.lr.append(optimizer.param_groups[0]["lr"])
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, loss_fn)
        result = evaluate(model, val_loader, num_classes, loss_fn)
        history.train_loss.append(train_loss)
        history.train_accuracy.append(train_acc)
        history.val_loss.append(result.loss)
        history.val_accuracy.append(result.accuracy)
        if result.accuracy > history.best_val_accuracy:
            history.best_epoch, history.best_val_accuracy = epoch, result.accuracy
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint_path is not None:
                torch.save(
                    {"epoch": epoch, "val_accuracy": result.accuracy, "model": best_state},
                    checkpoint_path,
                )
        if scheduler is not None:
            scheduler.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
    ### END SOLUTION 3.10
