"""A pretrained AlexNet from torchvision, adapted to CIFAR-10.

torchvision's ``alexnet`` is the "One weird trick" variant (Krizhevsky, 2014: 64-192-384-256-256
filters, no LRN, adaptive average pooling to 6x6) trained on ImageNet-1k. Transfer learning
keeps its feature extractor and replaces the last layer, ``classifier[6]``
(4096 -> 1000 ImageNet classes), by a new 4096 -> 10 layer:

* feature extraction: the features are frozen (``requires_grad=False``), only the classifier
  trains: 57,044,810 parameters, 54,575,114 trainable;
* fine-tuning: everything trains, the pretrained layers with a smaller learning rate.

Load them through torchvision's weights API (the ``AlexNet_Weights`` enum): ``pretrained=True``
is deprecated. The weights come with their own preprocessing (ImageNet's mean and std, 224 px
crops): use it, not 0.5 / 0.5 as the seed notebook did.
"""
# Your file for lesson 02_torch_pretrained: fill in every TODO, then run `pytest lessons/02_torch_pretrained`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchvision.models import AlexNet_Weights, alexnet

from alexnet_course.weights import ensure_weights

WEIGHTS = AlexNet_Weights.IMAGENET1K_V1
MODES = ("feature_extraction", "finetune")


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Task 2.2: ``"feature_extraction"`` freezes ``model.features`` (``requires_grad =
    False``) and leaves the classifier trainable; ``"finetune"`` makes everything trainable.
    """
    # TODO: Task 2.2 -- see docs/lessons/02_torch_pretrained.md#task-2-2
    raise NotImplementedError("Task 2.2 not started (docs/lessons/02_torch_pretrained.md#task-2-2)")


def build_model(num_classes: int = 10, mode: str = "feature_extraction") -> nn.Module:
    """Task 2.1: torchvision's AlexNet holding the ImageNet weights of ``WEIGHTS``, its last
    layer (``classifier[6]``) a new 4096 -> ``num_classes`` linear layer, ``mode`` set with
    :func:`set_mode`. Without the weights file and a network: the course's one-line
    ``WeightsError`` (``ensure_weights`` makes it), before anything is loaded.
    """
    # TODO: Task 2.1 -- see docs/lessons/02_torch_pretrained.md#task-2-1
    raise NotImplementedError("Task 2.1 not started (docs/lessons/02_torch_pretrained.md#task-2-1)")


def preprocessing() -> dict:
    """Task 2.3: the weights' own preprocessing, read from ``WEIGHTS.transforms()``.

    Returns:
        ``{"mean": (3 floats), "std": (3 floats), "size": crop size in pixels}``.
    """
    # TODO: Task 2.3 -- see docs/lessons/02_torch_pretrained.md#task-2-3
    raise NotImplementedError("Task 2.3 not started (docs/lessons/02_torch_pretrained.md#task-2-3)")


def make_optimizer(model: nn.Module, lr: float = 1e-3, backbone_lr: float = 1e-4,
                   momentum: float = 0.9) -> torch.optim.Optimizer:  # fmt: skip
    """Task 2.4: SGD with momentum ``momentum`` and two parameter groups.

    Group 0, the new head (``model.classifier[6]``), learns at ``lr``; group 1, every other
    TRAINABLE parameter (pretrained, so it needs smaller steps), at ``backbone_lr``. Frozen
    parameters are left out.
    """
    # TODO: Task 2.4 -- see docs/lessons/02_torch_pretrained.md#task-2-4
    raise NotImplementedError("Task 2.4 not started (docs/lessons/02_torch_pretrained.md#task-2-4)")


def finetune(model: nn.Module, loader: Iterable, epochs: int, optimizer: torch.optim.Optimizer,
             device: torch.device | str = "cpu") -> list[float]:  # fmt: skip
    """Task 2.5: train ``model`` on ``device`` for ``epochs`` passes over ``loader`` (any
    iterable of ``(images, labels)`` batches) in training mode, one update per batch with the
    given ``optimizer``, from that batch's cross-entropy loss alone.

    Returns:
        The mean loss over each epoch's samples (a batch weighs as many samples as it holds).
    """
    # TODO: Task 2.5 -- see docs/lessons/02_torch_pretrained.md#task-2-5
    raise NotImplementedError("Task 2.5 not started (docs/lessons/02_torch_pretrained.md#task-2-5)")
