"""The Keras input pipeline: ``tf.data`` with the same steps as the PyTorch one.

(Training only) random crop with zero padding and horizontal flip on the 32x32 uint8 images,
then scale to [0, 1], normalise per channel, and resize bilinearly (half-pixel centres, no
antialias). Output is NHWC, Keras's layout; with augmentation off the values equal the
PyTorch pipeline's NCHW values (a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from alexnet_course.data.cifar10 import Split


def preprocess(images, mean: Sequence[float], std: Sequence[float], size: int | None = None):
    """uint8 (N, H, W, C) -> normalised float32 (N, size, size, C)."""
    x = tf.cast(images, tf.float32) / 255.0
    x = (x - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    if size is not None and size != x.shape[-2]:
        x = tf.image.resize(x, (size, size), method="bilinear", antialias=False)
    return x


def augment(image, seed, pad: int = 4):
    """Random crop with zero padding and horizontal flip of one (H, W, C) image (stateless)."""
    h, w = image.shape[0], image.shape[1]
    if pad:
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (h, w, image.shape[-1]), seed=seed)
    return tf.image.stateless_random_flip_left_right(image, seed=seed[::-1])


def make_dataset(
    split: Split,
    *,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
    train: bool = False,
    seed: int = 0,
    pad: int = 4,
    shuffle: bool | None = None,
    preprocess_fn=None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images NHWC float32, labels int64)`` batches.

    Shuffling and augmentation are seeded; each epoch draws new crops and flips.
    ``preprocess_fn(images, mean, std, size)`` (lesson 01's ``keras_preprocess``) replaces
    :func:`preprocess` where given.
    """
    prep = preprocess_fn or preprocess
    shuffle = train if shuffle is None else shuffle
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if train:
        rng = tf.random.Generator.from_seed(seed)

        def _aug(x, y):
            return augment(x, rng.make_seeds(2)[0], pad), y

        ds = ds.map(_aug)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, y: (prep(x, mean, std, size), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # fmt: skip
    return ds.prefetch(tf.data.AUTOTUNE)
