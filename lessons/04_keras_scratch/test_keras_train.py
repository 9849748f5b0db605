"""Graded tests for lesson 04, part 2: training in Keras (tasks 4.6 - 4.8)."""

import numpy as np
import pytest
import torch  # noqa: F401  (import torch's libraries before TensorFlow's)

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal

kt = learner.load(__file__, "keras_train")
ka = learner.load(__file__, "keras_alexnet")
DOCS = "docs/lessons/04_keras_scratch.md"


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def small_net(seed=0, classes=4):
    """A small Keras convnet with BatchNorm: training and inference modes compute differently."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(classes),
    ])  # fmt: skip


def data(n=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), (np.arange(n) % classes).astype("int64")


@pytest.mark.task("4.6", points=3)
def test_train_step_matches_a_reference_tape():
    import keras
    import tensorflow as tf

    x, y = data()
    ours, ref = small_net(), small_net()
    ref.set_weights(ours.get_weights())
    opt_a = keras.optimizers.SGD(0.1, momentum=0.9)
    opt_b = keras.optimizers.SGD(0.1, momentum=0.9)
    step = kt.make_train_step(ours, opt_a)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    got, want = [], []
    for i in range(3):
        xb, yb = x[i * 8 : (i + 1) * 8], y[i * 8 : (i + 1) * 8]
        got.append(float(step(xb, yb)))
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, ref(xb, training=True))
        grads = tape.gradient(loss, ref.trainable_variables)
        opt_b.apply_gradients(zip(grads, ref.trainable_variables))
        want.append(float(loss))
    expect_close(got, want, "loss of 3 training steps against a reference GradientTape step",
                 atol=1e-5, hint="training=True, loss on logits (from_logits=True)",
                 docs=docs("4.6"))  # fmt: skip
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        expect_close(a, b, "weights after 3 steps against the reference", atol=1e-5,
                     docs=docs("4.6"))  # fmt: skip


@pytest.mark.task("4.6", points=2)
def test_train_step_updates_batch_norm_in_training_mode():
    import keras

    model = ka.build_alexnet(num_classes=4, norm="batch", input_size=67)
    bn = model.get_layer("norm1")
    gamma, moving = bn.gamma.numpy().copy(), bn.moving_mean.numpy().copy()
    step = kt.make_train_step(model, keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).normal(size=(4, 67, 67, 3)).astype("float32")
    loss = float(step(x, np.arange(4)))
    expect(np.isfinite(loss), "loss of one AlexNet training step", "finite", loss,
           docs=docs("4.6"))  # fmt: skip
    expect(not np.allclose(moving, bn.moving_mean.numpy()), "BatchNorm moving mean after a "
           "training step", "updated (BatchNorm in training mode)", "unchanged",
           hint="call the model with training=True; do not freeze BatchNorm",
           docs=docs("4.6"))  # fmt: skip
    expect(not np.allclose(gamma, bn.gamma.numpy()), "BatchNorm gamma after a training step",
           "trained", "unchanged", docs=docs("4.6"))  # fmt: skip


@pytest.mark.task("4.7", points=2)
def test_lr_schedule_does_not_compound():
    s = kt.lr_schedule(0.1, drop=0.5, every=2)
    got = [s(e, 0.0001) for e in range(6)]  # a wrong current rate, to be ignored
    expect_close(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], "learning rate per epoch "
                 "(step decay: drop 0.5 every 2 epochs)", atol=1e-12,
                 hint="a pure function of the epoch; lr / (epoch + 1) applied to the current "
                      "rate compounds", docs=docs("4.7"))  # fmt: skip


@pytest.mark.task("4.7", points=3)
def test_fit_checkpoints_the_best_validation_epoch(tmp_path):
    import tensorflow as tf

    x, y = data(32)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x, (y + 1) % 4)).batch(8)  # shifted labels
    model = small_net(seed=3)
    ckpt = tmp_path / "best.weights.h5"
    h = kt.fit_keras(model, train, val, epochs=5, lr=0.05, checkpoint_path=str(ckpt),
                     patience=10)  # fmt: skip
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        expect(key in h and len(h[key]) == 5, f"history[{key!r}]", "5 values",
               h.get(key), docs=docs("4.7"))  # fmt: skip
    best = int(np.argmax(h["val_accuracy"]))
    assert best != int(np.argmax(h["accuracy"])), "fixture failed to separate train and val"
    expect(ckpt.exists(), "checkpoint file", str(ckpt), "not written", docs=docs("4.7"))
    check = small_net(seed=4)
    check.load_weights(str(ckpt))
    check.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    pred = np.argmax(check.predict(x, verbose=0), 1)
    acc = float(np.mean(pred == (y + 1) % 4))
    expect_close(acc, max(h["val_accuracy"]), "validation accuracy of the checkpointed "
                 f"weights (history: val {np.round(h['val_accuracy'], 3).tolist()}, train "
                 f"{np.round(h['accuracy'], 3).tolist()})", atol=1e-6,
                 hint="ModelCheckpoint(monitor='val_accuracy', mode='max', "
                      "save_best_only=True)", docs=docs("4.7"))  # fmt: skip
    expect_close(h["learning_rate"], [0.05] * 5, "learning rate per epoch (drop every 10)",
                 atol=1e-7, docs=docs("4.7"))  # fmt: skip


@pytest.mark.task("4.8", points=3)
def test_evaluate_counts_every_sample():
    import keras
    import tensorflow as tf

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    preds = np.array([0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1])
    table = np.eye(3, dtype="float32")[preds] * 5

    class Known(keras.layers.Layer):
        def call(self, ids, training=False):
            out = tf.gather(table, tf.cast(ids[:, 0], tf.int32))
            return out + (100.0 * tf.random.normal(tf.shape(out)) if training else 0.0)

    model = keras.Sequential([keras.Input((1,)), Known()])
    ids = np.arange(12, dtype="float32")[:, None]
    ds = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(5)
    r = kt.evaluate_keras(model, ds, num_classes=3)
    expect_equal(np.asarray(r["confusion_matrix"]).tolist(), [[3, 1, 0], [0, 3, 1], [1, 1, 2]],
                 "confusion matrix over all 12 samples (rows true, columns predicted)",
                 hint="every sample of every batch; training=False", docs=docs("4.8"))
    expect_close(r["per_class_accuracy"], [0.75, 0.75, 0.5], "per-class accuracy", atol=1e-9,
                 docs=docs("4.8"))  # fmt: skip
    expect_close(r["accuracy"], 8 / 12, "accuracy", atol=1e-9, docs=docs("4.8"))
