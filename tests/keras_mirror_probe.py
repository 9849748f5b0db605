"""Five Keras training steps of lesson 04's AlexNet (dropout off, its two 4096-unit layers
narrowed to 512 by tests/narrow.py), once on one device and
once under MirroredStrategy over two logical CPUs, from the same weights, for the LRN and
the BatchNorm variants; prints a JSON line comparing the weights and the evaluation counts.
Run in its own process by tests/test_distributed.py (logical devices must be set before
TensorFlow starts).

The narrowing keeps the process under the suite's 2.5 GB (#30): at full width the four
models and the mirrored copies of 58M weights reached 5.6 GB. What the test is about (the
per-replica BatchNorm statistics, LRN, the gradient all-reduce, the evaluation's sum across
replicas) is all there at any width.
"""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

# one compute thread per op, as in the test suite's other processes (it runs two at a time
# on two cores), but two inter-op threads: with the suite's TF_NUM_INTEROP_THREADS=1 the two
# replicas' ops queue behind each other at every collective, and this probe took 43.4 s
# alone instead of 24.2 s (31.7 s with TensorFlow's default pools)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(2)
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402
from narrow import narrowed  # noqa: E402  (tests/narrow.py; this script runs from tests/)

from alexnet_course.compare import keras_distribute as kd  # noqa: E402
from alexnet_course.course import load_lesson_module  # noqa: E402

STEPS, GLOBAL_BATCH, SIZE, K = 5, 16, 67, 10


def build(strategy, norm, weights=None):
    ka = load_lesson_module("04_keras_scratch", "keras_alexnet", "solutions")
    kt = load_lesson_module("04_keras_scratch", "keras_train", "solutions")
    with strategy.scope():
        model = narrowed(ka.build_alexnet(K, norm, SIZE), ka)
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
        if weights is not None:
            model.set_weights(weights)
        opt = keras.optimizers.SGD(0.001, momentum=0.9)
        step = kd.distributed_step(strategy, kt.make_train_step, model, opt)
    return model, step, kt


def run(strategy, norm, x, y, weights=None):
    model, step, kt = build(strategy, norm, weights)
    start = [w.copy() for w in model.get_weights()]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    losses = [float(step(bx, by)) for bx, by in kd.distribute(strategy, ds)]
    ev = kt.evaluate_keras(model, ds, K)
    return start, model.get_weights(), losses, np.asarray(ev["confusion_matrix"])


def compare(mirrored, norm: str, x, y) -> dict:
    start, one, loss_one, cm_one = run(tf.distribute.get_strategy(), norm, x, y)
    _, two, loss_two, cm_two = run(mirrored, norm, x, y, weights=start)
    rel = max(float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))
              for a, b in zip(one, two))  # fmt: skip
    whole = float(np.linalg.norm(np.concatenate([(a - b).ravel() for a, b in zip(one, two)]))
                  / np.linalg.norm(np.concatenate([a.ravel() for a in one])))  # fmt: skip
    moved = max(float(np.linalg.norm(a - s)) for a, s in zip(one, start))
    return {"replicas": mirrored.num_replicas_in_sync, "max_relative_diff": rel,
            "model_relative_diff": whole,
            "weights_moved": moved, "losses_one": loss_one, "losses_two": loss_two,
            "counts_differ": int(np.abs(cm_one - cm_two).sum() // 2), "evaluated": int(cm_one.sum())}


def main() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, K, STEPS * GLOBAL_BATCH)
    mirrored = kd.strategy_for(["/cpu:0", "/cpu:1"])  # one: its collectives' keys are its own
    print(json.dumps({norm: compare(mirrored, norm, x, y) for norm in ("lrn", "batch")}))


if __name__ == "__main__":
    main()
