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
    ### BEGIN SOLUTION 3.1
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)
    ### END SOLUTION 3.1


def norm_layer(norm: str, channels: int) -> nn.Module:
    """Task 3.1: the layer the ``norm`` switch puts after a convolution's ReLU.

    Args:
        norm: 'lrn' for :func:`paper_lrn`, 'batch' for a new BatchNorm over ``channels``,
            'none' for a layer that returns its input unchanged; anything else: ValueError.
        channels: the number of channels it normalises.
    """
    ### BEGIN SOLUTION 3.1
    if norm == "lrn":
        return paper_lrn()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    ### END SOLUTION 3.1


def conv1_block(norm: str = "lrn") -> nn.Sequential:
    """Task 3.2: conv1, 96 filters 11x11 stride 4, ReLU, norm, overlapping max-pool 3/2.

    (N, 3, 227, 227) -> conv (N, 96, 55, 55) -> pool (N, 96, 27, 27).
    """
    ### BEGIN SOLUTION 3.2
    return nn.Sequential(
        nn.Conv2d(3, 96, kernel_size=11, stride=4),  # (N, 96, 55, 55)
        nn.ReLU(inplace=True),
        norm_layer(norm, 96),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (N, 96, 27, 27)
    )
    ### END SOLUTION 3.2


def conv2_block(norm: str = "lrn") -> nn.Sequential:
    """Task 3.3: conv2, 256 filters 5x5 padding 2, ReLU, norm, max-pool 3/2.

    (N, 96, 27, 27) -> conv (N, 256, 27, 27) -> pool (N, 256, 13, 13).
    """
    ### BEGIN SOLUTION 3.3
    return nn.Sequential(
        nn.Conv2d(96, 256, kernel_size=5, padding=2),  # (N, 256, 27, 27)
        nn.ReLU(inplace=True),
        norm_layer(norm, 256),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (N, 256, 13, 13)
    )
    ### END SOLUTION 3.3


def conv3_to_5(norm: str = "lrn") -> nn.Sequential:
    """Task 3.4: conv3 (384), conv4 (384), conv5 (256), all 3x3 padding 1 with ReLU, then
    max-pool 3/2. The paper has no normalisation here; with ``norm='batch'`` each ReLU is
    followed by ``BatchNorm2d``.

    (N, 256, 13, 13) -> (N, 384, 13, 13) -> (N, 384, 13, 13) -> (N, 256, 13, 13)
    -> pool (N, 256, 6, 6).
    """
    ### BEGIN SOLUTION 3.4
    layers: list[nn.Module] = []
    for c_in, c_out in ((256, 384), (384, 384), (384, 256)):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.MaxPool2d(kernel_size=3, stride=2))  # (N, 256, 6, 6)
    return nn.Sequential(*layers)
    ### END SOLUTION 3.4


def classifier(num_classes: int = 10, dropout: float = 0.5) -> nn.Sequential:
    """Task 3.5: dropout, 9216 -> 4096, ReLU, dropout, 4096 -> 4096, ReLU, 4096 -> classes.

    Returns logits: ``nn.CrossEntropyLoss`` applies log-softmax itself.
    """
    ### BEGIN SOLUTION 3.5
    return nn.Sequential(
        nn.Dropout(p=dropout),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
    ### END SOLUTION 3.5


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
        ### BEGIN SOLUTION 3.6
        self.features = nn.Sequential(
            conv1_block(config.norm), conv2_block(config.norm), conv3_to_5(config.norm)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = classifier(config.num_classes, config.dropout)
        init_paper_weights(self)
        ### END SOLUTION 3.6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION 3.6
        x = self.features(x)  # (N, 256, 6, 6) at 227 px
        x = self.avgpool(x)  # (N, 256, 6, 6)
        x = torch.flatten(x, 1)  # (N, 9216)
        return self.classifier(x)  # (N, num_classes)
        ### END SOLUTION 3.6


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
    ### BEGIN SOLUTION 3.7
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ones = {1, 3, 4, 5, 6}  # conv2, conv4, conv5, fc6, fc7 (0-based order of the 8 layers)
    for i, layer in enumerate(layers):
        nn.init.normal_(layer.weight, mean=0.0, std=0.01)
        nn.init.constant_(layer.bias, 1.0 if i in ones else 0.0)
    return model
    ### END SOLUTION 3.7
