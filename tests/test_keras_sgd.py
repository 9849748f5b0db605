"""The Keras arms' in-place SGD (compare/keras_sgd.py) makes Keras's own SGD update: the
same weights and momentum after steps under a changing learning rate, through lesson 04's
compiled step and under XLA."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

# TensorFlow stays out of the xdist workers (#30: importing it at collection put 0.6 GB into
# both, and the next tests in them measured up to 2.9 GB): each test runs in a process of its
# own, and nothing here imports TensorFlow before a test starts
pytestmark = [
    pytest.mark.own_process,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                       reason="TensorFlow is not installed"),
]  # fmt: skip


def _model(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((9, 9, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(5),
    ])  # fmt: skip
    return model


def _train(opt, seed: int, steps: int, jit: bool):
    import tensorflow as tf

    from alexnet_course.course import load_lesson_module

    kt = load_lesson_module("04_keras_scratch", "keras_train", impl="solutions")
    model = _model(seed)
    step = kt.make_train_step(model, opt)
    if jit:
        from alexnet_course.compare.settings import xla_step

        step = xla_step(step)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = tf.constant(rng.normal(size=(6, 9, 9, 3)).astype("float32"))
        y = tf.constant(rng.integers(0, 5, size=6))
        step(x, y)
    return [v.numpy() for v in model.weights], [m.numpy() for m in opt.momentums]


def test_in_place_sgd_makes_keras_sgd_update():
    """Momentum with and without decay, under XLA, and decay alone (no momentum buffer)."""
    import keras

    from alexnet_course.compare.keras_sgd import keras_sgd
    from alexnet_course.compare.models import keras_schedule

    def schedule():  # a warm-up then a cosine: the rate changes every step
        return keras_schedule(0.2, 8, 0.25)

    start = [v.numpy() for v in _model(3).weights]
    for momentum, weight_decay, jit in ((0.9, 5e-4, False), (0.9, 5e-2, True),
                                        (0.5, None, False), (0.0, 5e-2, False)):  # fmt: skip
        case = f"momentum {momentum}, weight decay {weight_decay}, XLA {jit}"
        ours, our_m = _train(keras_sgd(schedule(), momentum=momentum, weight_decay=weight_decay),
                             seed=3, steps=8, jit=jit)  # fmt: skip
        theirs, their_m = _train(keras.optimizers.SGD(schedule(), momentum=momentum,
                                                      weight_decay=weight_decay),
                                 seed=3, steps=8, jit=jit)  # fmt: skip
        moved = max(float(np.abs(a - b).max()) for a, b in zip(theirs, start))
        assert moved > 1e-2, case  # the steps moved the weights far beyond the tolerance
        for a, b in zip(ours + our_m, theirs + their_m, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=case)


def test_several_replicas_keep_keras_sgd():
    import keras

    from alexnet_course.compare.keras_sgd import keras_sgd

    one, many = keras_sgd(0.1, momentum=0.9), keras_sgd(0.1, momentum=0.9, replicas=2)
    assert isinstance(one, keras.optimizers.SGD) and type(one) is not keras.optimizers.SGD
    assert type(many) is keras.optimizers.SGD
