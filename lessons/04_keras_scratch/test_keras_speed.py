"""Graded tests for lesson 04, part 3: Keras training throughput (task 4.9), as a ratio to a
reference Keras AlexNet written here and timed in the same run (pass at >= 0.8x).

How it is measured: your model (``build_alexnet(10, "lrn", size, dropout=0.0)``: no random
masks, so both sides compute the same thing) gets start weights chosen here and your
``make_train_step`` with ``SGD(1e-3)`` (no momentum: two full models' momentum would be
another 0.5 GB, and the step's speed is the subject); one untimed step traces it. Then, in
turns, this file times (wall clock, from here) a call that runs ``K`` of your steps and
returns the losses and the small weight arrays, and ``K`` steps of the reference, which
started from the same weights. Every call, the untimed one too, gets a NEW batch drawn here
(images and labels), the same for both sides: the losses and weights of EVERY call must
agree with the reference's (that is the proof the steps ran, then and there: a batch nobody
has seen before cannot be worked out in advance); the ratio is the reference's time over
yours. A ratio under the bar by no more than the run's own timing noise, on a busy machine,
is reported as "machine too busy to judge speed: rerun when it is quieter" (listed, not
counted); the class grader decides every ratio as measured.
"""

import statistics
import time

import numpy as np
import pytest
import torch  # noqa: F401  (import torch's libraries before TensorFlow's)

from alexnet_course.grading import checks, learner
from alexnet_course.grading.checks import expect
from alexnet_course.grading.remote import observe

ka = learner.load(__file__, "keras_alexnet")
kt = learner.load(__file__, "keras_train")
DOCS = "docs/lessons/04_keras_scratch.md#task-4-9"
MIN_RATIO = 0.8
LR = 1e-3
SMALL = 50_000  # weight arrays up to this size come back after each timed call
BLOCK = 4  # a batch is drawn at 1/BLOCK of the input size, as bytes, and blown up by each side
_RUN: dict = {}  # the worker's model and step between calls


def reference_model(size):
    import keras
    import tensorflow as tf
    from keras import layers

    def lrn(x):
        return tf.nn.local_response_normalization(x, 2, 2.0, 1e-4, 0.75)

    return keras.Sequential([
        keras.Input((size, size, 3)),
        layers.Conv2D(96, 11, strides=4, activation="relu"), layers.Lambda(lrn),
        layers.MaxPooling2D(3, 2),
        layers.Conv2D(256, 5, padding="same", activation="relu"), layers.Lambda(lrn),
        layers.MaxPooling2D(3, 2),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPooling2D(3, 2),
        layers.UpSampling2D(6) if size == 67 else layers.Identity(),
        layers.Flatten(), layers.Dropout(0.0), layers.Dense(4096, activation="relu"),
        layers.Dropout(0.0), layers.Dense(4096, activation="relu"), layers.Dense(10),
    ])  # fmt: skip


def start_weights(size: int) -> list:
    """The start weights of both sides: a reference model's initial ones (seeded by the
    caller). The model itself is let go at once: Keras models live in reference cycles."""
    import gc

    model = reference_model(size)
    weights = model.get_weights()
    del model
    gc.collect()
    return weights


def reference_step(model):
    import keras
    import tensorflow as tf

    opt = keras.optimizers.SGD(LR)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def draw_batch(i: int, n: int, size: int) -> tuple:
    """Call ``i``'s batch, drawn here: ``n`` images as bytes at 1/BLOCK of ``size``, labels."""
    rng = np.random.default_rng(1_000 + i)
    small = -(-size // BLOCK)
    pixels = rng.integers(0, 256, size=(n, small, small, 3), dtype=np.uint8)
    return pixels, rng.integers(0, 10, size=n).astype("int64")


def _batch(pixels, labels, size: int) -> tuple:
    """The batch a call trains on: the bytes blown up to ``size`` x ``size`` (nearest) and
    scaled to about [-2, 2], float32, NHWC."""
    x = np.repeat(np.repeat(np.asarray(pixels), BLOCK, axis=1), BLOCK, axis=2)[:, :size, :size]
    return (x.astype("float32") - 127.5) / 64.0, np.asarray(labels)


def small_weights(model) -> list:
    return [v.numpy() for v in model.weights if int(np.prod(v.shape)) <= SMALL]


def _observe_start(size, weights, pixels, labels):
    """Untimed: your model from the given weights, your step, one step to trace it."""
    import keras

    model = ka.build_alexnet(10, "lrn", size, dropout=0.0)
    model.set_weights(weights)
    step = kt.make_train_step(model, keras.optimizers.SGD(LR))
    _RUN.clear()
    _RUN.update(model=model, step=step, size=size)
    return float(step(*_batch(pixels, labels, size)))


def _observe_steps(k, pixels, labels):
    """Timed from the test: ``k`` more of your steps on the batch given; the losses and small
    weights back."""
    model, step = _RUN["model"], _RUN["step"]
    x, y = _batch(pixels, labels, _RUN["size"])
    losses = [float(step(x, y)) for _ in range(k)]
    return {"losses": losses, "small": small_weights(model)}


def _observe_done():
    """Lets go of your model, its step and optimizer (about 0.5 GB): the tests after this
    one start without them."""
    _RUN.clear()


def observed(fn, *args, what: str, hint: str | None = None):
    """``observe(fn, *args)``; an error your code raised becomes a teaching failure."""
    return checks.observed(fn, *args, what=what, hint=hint, docs=DOCS)


def measure(size: int, n: int, k: int, rounds: int, benchmark, rtol: float = 1e-3) -> None:
    import keras

    keras.utils.set_random_seed(0)
    start = start_weights(size)
    pixels, labels = draw_batch(0, n, size)
    first = observed(_observe_start, size, start, pixels, labels, what=f"build_alexnet(10, 'lrn', "
                     f"{size}, dropout=0.0), its weights set to the test's, and one step of your "
                     "make_train_step", hint="the model's weights must be the lesson's "
                     "network's, in layer order (model.set_weights)")  # fmt: skip
    ref = reference_model(size)  # made after yours: two full models, never three (#30)
    ref.set_weights(start)
    start_small = [w for w in start if w.size <= SMALL]
    del start
    step = reference_step(ref)
    want_first = float(step(*_batch(pixels, labels, size)))
    what = f"batch {n} at {size} px"
    expect(abs(first - want_first) <= rtol * max(1.0, abs(want_first)), f"{what}: loss of "
           "your first step from the given weights", f"{want_first:.5f} (the reference's)",
           f"{first:.5f}", hint="build_alexnet(10, 'lrn', size, dropout=0.0) and "
           "make_train_step must compute the lesson's network and loss", docs=DOCS)  # fmt: skip
    calls = [0]  # calls made; each gets a new batch

    def ours(batch):
        return observe(_observe_steps, k, *batch)

    def one_round(call_ours):
        calls[0] += 1
        batch = draw_batch(calls[0], n, size)
        t0 = time.perf_counter()
        o = call_ours(batch)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        x, y = _batch(*batch, size)
        losses = [float(step(x, y)) for _ in range(k)]
        small = small_weights(ref)
        t_ref = time.perf_counter() - t0
        ok = len(o["small"]) == len(small) and all(
            np.shape(a) == b.shape for a, b in zip(o["small"], small))  # fmt: skip
        moved = sum(float(np.sum((b - s) ** 2)) for b, s in zip(small, start_small)) ** 0.5
        off = sum(float(np.sum((np.asarray(a) - b) ** 2))
                  for a, b in zip(o["small"], small)) ** 0.5 if ok else float("inf")  # fmt: skip
        expect(ok and off <= 0.05 * moved and np.allclose(o["losses"], losses, rtol=rtol,
                                                          atol=1e-4),
               f"{what}: losses and small weights after your timed steps of call {calls[0]} "
               "(every call on a new batch), against the reference's, which started from the "
               "same weights and took the same batches (the proof that the timed steps ran)",
               f"losses {np.round(losses, 4).tolist()}, weights within 5% of the update",
               f"losses {np.round(o['losses'], 4).tolist()}, weights off by "
               f"{off / max(moved, 1e-12):.0%} of the update", docs=DOCS)  # fmt: skip
        return t_ours, t_ref

    def ours_recorded(batch):  # the first timed call also makes pytest-benchmark's record
        return benchmark.pedantic(ours, args=(batch,), rounds=1, iterations=1, warmup_rounds=0)

    ratio, t_ours, t_ref, noise = 0.0, 1.0, 1.0, 1.0
    for attempt in range(2):  # one re-measure absorbs a noisy neighbour
        times = [one_round(ours_recorded if attempt == r == 0 else ours) for r in range(rounds)]
        t_ours = statistics.median(t for t, _ in times) / k
        t_ref = statistics.median(t for _, t in times) / k
        ratio = t_ref / t_ours
        # the timing noise: each side's median time over its best
        noise = max(statistics.median(side) / min(side) for side in zip(*times))
        if ratio >= MIN_RATIO:
            break
    observe(_observe_done)
    benchmark.extra_info.update(images_per_s=n / t_ours, reference_images_per_s=n / t_ref,
                                ratio=ratio, timing_noise=noise)  # fmt: skip
    from alexnet_course.grading import load  # the check's side only (not in the worker)

    if why := load.too_busy_to_judge(ratio, MIN_RATIO, noise):
        raise load.MachineBusy(load.busy_message(why))
    expect(ratio >= MIN_RATIO, f"Keras training throughput, {what}, relative to the "
           "reference in the same run", f">= {MIN_RATIO}x ({n / t_ref:.1f} images/s)",
           f"{ratio:.2f}x ({n / t_ours:.1f} images/s; timing noise {noise:.2f}x)",
           hint="wrap the step in tf.function; avoid Python work per sample", docs=DOCS)  # fmt: skip


@pytest.mark.task("4.9", points=2)
def test_keras_training_throughput_against_reference(benchmark):
    measure(67, 16, k=1, rounds=3, benchmark=benchmark)


@pytest.mark.gpu
@pytest.mark.task("4.9", points=1)
def test_keras_gpu_throughput(benchmark):
    """On a GPU: the same ratio at 227 px with batch 128."""
    measure(227, 128, k=3, rounds=5, benchmark=benchmark, rtol=1e-2)  # TF32, other kernels
