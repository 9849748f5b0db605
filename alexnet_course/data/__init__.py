"""CIFAR-10 for both frameworks: one reader, one split, two pipelines that see the same data.

The framework pipelines live in :mod:`alexnet_course.data.torch_pipeline` and
:mod:`alexnet_course.data.keras_pipeline` (imported on demand: TensorFlow is slow to import).
"""

from alexnet_course.data.cifar10 import (
    CIFAR10,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    Split,
    default_data_dir,
    load_cifar10,
    read_batch,
)
from alexnet_course.data.synthetic import synthetic_images, write_synthetic_cifar10

__all__ = [
    "CIFAR10", "CIFAR10_MEAN", "CIFAR10_STD", "CLASSES", "IMAGENET_MEAN", "IMAGENET_STD",
    "DataError", "Split", "default_data_dir", "load_cifar10", "read_batch",
    "synthetic_images", "write_synthetic_cifar10",
]  # fmt: skip
