"""AlexNet from scratch in PyTorch: the network of Krizhevsky, Sutskever and Hinton (2012).

"ImageNet Classification with Deep Convolutional Neural Networks", NeurIPS 2012, section 3
(architecture) and section 5 (initialisation). We build the paper's network as one tower, the
way it is usually drawn today: the paper split every layer over two GPUs, which changes where
layers connect (conv2, conv4 and conv5 only saw their own GPU's half) but not the shapes.

Variant: the paper's, 227x227 input (the paper says 224; 227 is the size its numbers work
for), 96-256-384-384-256 filters, local response normalisation (LRN) after conv1 and conv2.
torchvision's ``alexnet`` is the later "One weird trick" variant (64-192-384-256-256, no LRN);
lesson 02 uses that one, with ImageNet weights.

A ``norm`` switch picks what follows the first two convolutions:
``'lrn'`` (the paper's), ``'batch'`` (BatchNorm after every convolution, as the seed
notebook did; it trains faster) or ``'none'``.

Shapes for a (N, 3, 227, 227) input:

    conv1 block  (N, 96, 27, 27)     conv 11x11/4 -> (N, 96, 55, 55), ReLU, norm, max-pool 3/2
    conv2 block  (N, 256, 13, 13)    conv 5x5 pad 2 -> (N, 256, 27, 27), ReLU, norm, pool 3/2
    conv3..5     (N, 256, 6, 6)      conv 3x3 pad 1: 384, 384, 256, ReLU each, pool 3/2
    flatten      (N, 9216)
    classifier   (N, num_classes)    dropout, 9216 -> 4096, ReLU, dropout, 4096 -> 4096, ReLU,
                                     4096 -> num_classes (logits: no softmax)
"""
# Your file for lesson 03_torch_scratch: fill in every TODO, then run `pytest lessons/03_torch_scratch`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMS = ("lrn", "batch", "none")


@dataclass
class AlexNetConfig:
    """Everything that changes the network, in one typed place."""

    num_classes: int = 10
    norm: str = "lrn"  # 'lrn' (paper) | 'batch' | 'none'
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")


def paper_lrn() -> nn.LocalResponseNorm:
    """Task 3.1: the paper's local response normalisation (section 3.3).

    The paper computes ``b = a / (k + alpha * sum(a_j ** 2)) ** beta`` over n = 5 adjacent
    channels with k = 2, alpha = 1e-4, beta = 0.75. ``torch.nn.LocalResponseNorm`` does not
    put ``alpha`` where the paper does: compare the two formulas (the page's trap).
    """
    # TODO: Task 3.1 -- see docs/lessons/03_torch_scratch.md#task-3-1
    raise NotImplementedError("Task 3.1 not started (docs/lessons/03_torch_scratch.md#task-3-1)")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """Task 3.1: the layer the ``norm`` switch puts after a convolution's ReLU.

    Args:
        norm: 'lrn' for :func:`paper_lrn`, 'batch' for a new BatchNorm over ``channels``,
            'none' for a layer that returns its input unchanged; anything else: ValueError.
        channels: the number of channels it normalises.
    """
    # TODO: Task 3.1 -- see docs/lessons/03_torch_scratch.md#task-3-1
    raise NotImplementedError("Task 3.1 not started (docs/lessons/03_torch_scratch.md#task-3-1)")


def conv1_block(norm: str = "lrn") -> nn.Sequential:
    """Task 3.2: conv1, 96 filters 11x11 stride 4, ReLU, norm, overlapping max-pool 3/2.

    (N, 3, 227, 227) -> conv (N, 96, 55, 55) -> pool (N, 96, 27, 27).
    """
    # TODO: Task 3.2 -- see docs/lessons/03_torch_scratch.md#task-3-2
    raise NotImplementedError("Task 3.2 not started (docs/lessons/03_torch_scratch.md#task-3-2)")


def conv2_block(norm: str = "lrn") -> nn.Sequential:
    """Task 3.3: conv2, 256 filters 5x5 padding 2, ReLU, norm, max-pool 3/2.

    (N, 96, 27, 27) -> conv (N, 256, 27, 27) -> pool (N, 256, 13, 13).
    """
    # TODO: Task 3.3 -- see docs/lessons/03_torch_scratch.md#task-3-3
    raise NotImplementedError("Task 3.3 not started (docs/lessons/03_torch_scratch.md#task-3-3)")


def conv3_to_5(norm: str = "lrn") -> nn.Sequential:
    """Task 3.4: conv3 (384), conv4 (384), conv5 (256), all 3x3 padding 1 with ReLU, then
    max-pool 3/2. The paper has no normalisation here; with ``norm='batch'`` each ReLU is
    followed by ``BatchNorm2d``.

    (N, 256, 13, 13) -> (N, 384, 13, 13) -> (N, 384, 13, 13) -> (N, 256, 13, 13)
    -> pool (N, 256, 6, 6).
    """
    # TODO: Task 3.4 -- see docs/lessons/03_torch_scratch.md#task-3-4
    raise NotImplementedError("Task 3.4 not started (docs/lessons/03_torch_scratch.md#task-3-4)")


def classifier(num_classes: int = 10, dropout: float = 0.5) -> nn.Sequential:
    """Task 3.5: dropout, 9216 -> 4096, ReLU, dropout, 4096 -> 4096, ReLU, 4096 -> classes.

    Returns logits: ``nn.CrossEntropyLoss`` applies log-softmax itself.
    """
    # TODO: Task 3.5 -- see docs/lessons/03_torch_scratch.md#task-3-5
    raise NotImplementedError("Task 3.5 not started (docs/lessons/03_torch_scratch.md#task-3-5)")


class AlexNet(nn.Module):
    """Task 3.6: the whole network, torchvision's naming: ``features``, ``avgpool``,
    ``classifier``, with each sample flattened to 9216 values in (C, H, W) order between
    the last two (also for channels_last input: the page's trap).

    ``avgpool`` pools adaptively to 6x6: at 227 px it changes nothing; it lets smaller
    inputs (67 px is the smallest the layer stack accepts) reach the 9216-input classifier,
    which the ``cpu`` profile of the comparison uses.
    """

    def __init__(self, config: AlexNetConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or AlexNetConfig(**overrides)
        self.config = config
        # TODO: Task 3.6 -- see docs/lessons/03_torch_scratch.md#task-3-6
        raise NotImplementedError("Task 3.6 not started (docs/lessons/03_torch_scratch.md#task-3-6)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TODO: Task 3.6 -- see docs/lessons/03_torch_scratch.md#task-3-6
        raise NotImplementedError("Task 3.6 not started (docs/lessons/03_torch_scratch.md#task-3-6)")


@torch.no_grad()
def init_paper_weights(model: nn.Module) -> nn.Module:
    """Task 3.7: the paper's initialisation (section 5).

    Every convolution and fully connected weight ~ N(0, 0.01**2) (std 0.01). Biases are 1 in
    conv2, conv4, conv5 and the two hidden fully connected layers ("this accelerates the early
    stages of learning by providing the ReLUs with positive inputs"), 0 in conv1, conv3 and
    the output layer. BatchNorm layers keep their defaults (weight 1, bias 0).

    Returns:
        The same model, for chaining.
    """
    # TODO: Task 3.7 -- see docs/lessons/03_torch_scratch.md#task-3-7
    raise NotImplementedError("Task 3.7 not started (docs/lessons/03_torch_scratch.md#task-3-7)")
