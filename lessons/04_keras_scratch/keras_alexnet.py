"""AlexNet in Keras 3 (TensorFlow backend), equal to lesson 03's PyTorch network.

The same paper variant (Krizhevsky, Sutskever and Hinton, 2012; 227x227 input, 96-256-384-
384-256 filters, LRN after conv1 and conv2, the same ``norm`` switch), written with Keras
layers, and a port of PyTorch weights into it, so that the two frameworks give the same
logits on the same input. Two conventions differ and are the lesson's traps:

* Layout. Keras is channels LAST: images (N, H, W, C), kernels (kh, kw, in, out) (HWIO);
  PyTorch is channels FIRST: (N, C, H, W) and (out, in, kh, kw) (OIHW). Flattening
  (N, 6, 6, 256) and (N, 256, 6, 6) orders the 9216 features differently, so fc6's weights
  must be permuted when ported.
* LRN. ``tf.nn.local_response_normalization(x, depth_radius, bias, alpha, beta)`` sums over
  ``2 * depth_radius + 1`` channels and does NOT divide alpha by that size, while PyTorch's
  LocalResponseNorm divides alpha by its ``size``: the same paper layer (n = 5, k = 2,
  alpha = 1e-4, beta = 0.75) takes different arguments in the two frameworks.

Shapes for a (N, 227, 227, 3) input: conv1 block (N, 27, 27, 96), conv2 block
(N, 13, 13, 256), conv3-5 (N, 6, 6, 256), flatten (N, 9216), classifier (N, num_classes).
"""
# Your file for lesson 04_keras_scratch: fill in every TODO, then run `pytest lessons/04_keras_scratch`.
# Generated from the reference solution by `alexnet-course stubs`.

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

NORMS = ("lrn", "batch", "none")
# PyTorch's BatchNorm defaults, so that both frameworks normalise alike
BN = {"epsilon": 1e-5, "momentum": 0.9}


class PaperLRN(layers.Layer):
    """Task 4.1: the paper's local response normalisation as a Keras layer (section 3.3)."""

    def call(self, x):
        # TODO: Task 4.1 -- see docs/lessons/04_keras_scratch.md#task-4-1
        raise NotImplementedError("Task 4.1 not started (docs/lessons/04_keras_scratch.md#task-4-1)")


class AdaptiveAvgPool2D(layers.Layer):
    """PyTorch's ``AdaptiveAvgPool2d`` for a static input size: output cell (i, j) averages
    rows ``floor(i * H / S)`` to ``ceil((i + 1) * H / S)`` (and the same for columns). At 227 px
    the features are already 6x6 and it changes nothing. (Given, not a task.)"""

    def __init__(self, size: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = size

    def call(self, x):
        h, w, s = x.shape[1], x.shape[2], self.size
        if h == s and w == s:
            return x
        rows = []
        for i in range(s):
            r0, r1 = (i * h) // s, -(-((i + 1) * h) // s)
            cols = []
            for j in range(s):
                c0, c1 = (j * w) // s, -(-((j + 1) * w) // s)
                cols.append(tf.reduce_mean(x[:, r0:r1, c0:c1, :], axis=[1, 2]))
            rows.append(tf.stack(cols, axis=1))
        return tf.stack(rows, axis=1)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def norm_layer(norm: str, name: str) -> layers.Layer:
    """Task 4.1: 'lrn' -> :class:`PaperLRN`, 'batch' -> ``BatchNormalization(**BN)``,
    'none' -> ``layers.Identity``; each named ``name``."""
    # TODO: Task 4.1 -- see docs/lessons/04_keras_scratch.md#task-4-1
    raise NotImplementedError("Task 4.1 not started (docs/lessons/04_keras_scratch.md#task-4-1)")


def paper_init(bias: float):
    """The paper's initialisers for one layer: weights N(0, 0.01), bias constant."""
    return {"kernel_initializer": keras.initializers.RandomNormal(0.0, 0.01),
            "bias_initializer": keras.initializers.Constant(bias)}  # fmt: skip


def conv_blocks(norm: str = "lrn") -> list[layers.Layer]:
    """Task 4.2: the feature extractor as a list of layers, in order.

    conv1: Conv2D 96, 11x11, stride 4, 'valid', ReLU, norm, MaxPool 3/2 -> (N, 27, 27, 96);
    conv2: Conv2D 256, 5x5, 'same', ReLU, norm, MaxPool 3/2 -> (N, 13, 13, 256);
    conv3, conv4, conv5: Conv2D 384, 384, 256, 3x3, 'same', ReLU (with norm='batch' each
    followed by BatchNormalization), MaxPool 3/2 -> (N, 6, 6, 256).
    Name the convolutions conv1 .. conv5 and initialise them with :func:`paper_init`
    (bias 1 in conv2, conv4, conv5; 0 in conv1, conv3).
    """
    # TODO: Task 4.2 -- see docs/lessons/04_keras_scratch.md#task-4-2
    raise NotImplementedError("Task 4.2 not started (docs/lessons/04_keras_scratch.md#task-4-2)")


def classifier_layers(num_classes: int = 10, dropout: float = 0.5) -> list[layers.Layer]:
    """Task 4.3: Flatten, Dropout, Dense 4096 ReLU (fc6), Dropout, Dense 4096 ReLU (fc7),
    Dense num_classes (fc8, logits: no softmax). Paper initialisation: bias 1 in fc6 and
    fc7, 0 in fc8."""
    # TODO: Task 4.3 -- see docs/lessons/04_keras_scratch.md#task-4-3
    raise NotImplementedError("Task 4.3 not started (docs/lessons/04_keras_scratch.md#task-4-3)")


def build_alexnet(num_classes: int = 10, norm: str = "lrn", input_size: int = 227,
                  dropout: float = 0.5) -> keras.Model:  # fmt: skip
    """Task 4.4: the whole network as a ``keras.Sequential`` named "alexnet": an input of
    ``input_size`` x ``input_size`` x 3, :func:`conv_blocks`, the given
    :class:`AdaptiveAvgPool2D` to 6x6, :func:`classifier_layers`."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    # TODO: Task 4.4 -- see docs/lessons/04_keras_scratch.md#task-4-4
    raise NotImplementedError("Task 4.4 not started (docs/lessons/04_keras_scratch.md#task-4-4)")


def build_torchvision_alexnet(num_classes: int = 1000, input_size: int = 224) -> keras.Model:
    """torchvision's AlexNet ("One weird trick": 64-192-384-256-256, padding 2 on conv1, no
    LRN) in Keras, for ported ImageNet weights. (Given, not a task.)"""
    convs = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
    net: list[layers.Layer] = [keras.Input((input_size, input_size, 3))]
    for i, (filters, k, stride, pad) in enumerate(convs, start=1):
        net += [layers.ZeroPadding2D(pad, name=f"pad{i}"),
                layers.Conv2D(filters, k, strides=stride, activation="relu", name=f"conv{i}")]
        if i in (1, 2, 5):
            net.append(layers.MaxPooling2D(3, strides=2, name=f"pool{i}"))
    net += [AdaptiveAvgPool2D(6, name="avgpool"), layers.Flatten(name="flatten"),
            layers.Dropout(0.5), layers.Dense(4096, activation="relu", name="fc6"),
            layers.Dropout(0.5), layers.Dense(4096, activation="relu", name="fc7"),
            layers.Dense(num_classes, name="fc8")]  # fmt: skip
    return keras.Sequential(net, name="torchvision_alexnet")


def port_torch_weights(torch_model, keras_model: keras.Model) -> keras.Model:
    """Task 4.5: copy a PyTorch AlexNet's weights (lesson 03's, or torchvision's) into the
    matching Keras model.

    Take the torch Conv2d / Linear layers in order and the Keras Conv2D / Dense layers in
    order. Convolution kernels go OIHW -> HWIO; dense kernels (out, in) -> (in, out). The
    first dense layer reads the flattened features: torch flattens (C, H, W), Keras
    (H, W, C), so its input axis must be reordered from (C, H, W) to (H, W, C). BatchNorm:
    gamma, beta, moving mean, moving variance from weight, bias, running_mean, running_var.
    """
    import torch

    # TODO: Task 4.5 -- see docs/lessons/04_keras_scratch.md#task-4-5
    raise NotImplementedError("Task 4.5 not started (docs/lessons/04_keras_scratch.md#task-4-5)")
