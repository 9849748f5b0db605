"""Graded tests for lesson 04, part 2: training in Keras (tasks 4.6 - 4.8).

Each test has two halves: an ``_observe_*`` function that runs your code from a start this
file chooses (weights, data) and returns data only (losses, weights, history, the checkpoint
file's bytes), and the test itself, which runs the same training with its own reference code
from the same start and compares.
"""

import os
import tempfile

import numpy as np
import pytest
import torch  # noqa: F401  (import torch's libraries before TensorFlow's)
from hypothesis import given
from hypothesis import strategies as st

from alexnet_course.grading import learner
from alexnet_course.grading.checks import expect, expect_close, expect_equal, observed
from alexnet_course.grading.draws import drawn
from alexnet_course.grading.remote import observe

kt = learner.load(__file__, "keras_train")
ka = learner.load(__file__, "keras_alexnet")
DOCS = "docs/lessons/04_keras_scratch.md"
SGD_MOMENTUM = 0.9  # the page's optimizer: SGD with momentum 0.9 (not Nesterov)


def docs(task: str) -> str:
    return f"{DOCS}#task-{task.replace('.', '-')}"


def small_net(seed=0, classes=4, probe=None):
    """A small Keras convnet with BatchNorm: training and inference modes compute differently.
    With ``probe`` (a list), each call of the model appends whether it ran eagerly (op by op)
    or in a compiled graph."""
    import keras
    import tensorflow as tf

    class Probe(keras.layers.Layer):
        def call(self, x):
            probe.append(bool(tf.executing_eagerly()))
            return x

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 3)), *([Probe()] if probe is not None else []),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(classes),
    ])  # fmt: skip


def data(n=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), (np.arange(n) % classes).astype("int64")


def _kind(layer) -> str:
    """The Keras class a layer is (or derives from): 'Conv2D', 'BatchNormalization', ..."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("keras."):
            return cls.__name__
    return type(layer).__name__


# ---------------------------------------------------------------- 4.6
def _observe_train_steps(weights, batches, lr, momentum):
    import keras

    eager: list = []
    model = small_net(probe=eager)
    model.set_weights(weights)
    step = kt.make_train_step(model, keras.optimizers.SGD(lr, momentum=momentum))
    losses = [float(step(xb, yb)) for xb, yb in batches]
    return {"losses": losses, "weights": [np.asarray(w) for w in model.get_weights()],
            "eager": eager}  # fmt: skip


@pytest.mark.task("4.6", points=3)
def test_train_step_matches_a_reference_tape():
    import keras
    import tensorflow as tf

    x, y = data()
    ref = small_net(seed=1)
    start = ref.get_weights()
    batches = [(x[i * 8 : (i + 1) * 8], y[i * 8 : (i + 1) * 8]) for i in range(3)]
    o = observed(_observe_train_steps, start, batches, 0.1, 0.9, what="make_train_step: "
                 "three steps of SGD(0.1, momentum=0.9) on a small convnet",
                 docs=docs("4.6"))  # fmt: skip
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    want = []
    for xb, yb in batches:
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, ref(xb, training=True))
        grads = tape.gradient(loss, ref.trainable_variables)
        opt.apply_gradients(zip(grads, ref.trainable_variables))
        want.append(float(loss))
    expect_close(o["losses"], want, "loss of 3 training steps against a reference GradientTape "
                 "step", atol=1e-5, hint="the model in training mode, the loss on logits, one "
                 "update per call; step(x, y) returns the batch's loss", docs=docs("4.6"))  # fmt: skip
    expect_equal(len(o["weights"]), len(ref.get_weights()), "number of weight arrays after "
                 "3 steps", docs=docs("4.6"))  # fmt: skip
    for a, b in zip(o["weights"], ref.get_weights()):
        expect_close(a, b, "weights after 3 steps against the reference", atol=1e-5,
                     hint="apply the gradients of model.trainable_variables with the "
                          "optimizer you were given", docs=docs("4.6"))  # fmt: skip
    expect(bool(o["eager"]) and not any(o["eager"]), "make_train_step: how the model ran in "
           "3 steps", "in a compiled graph (traced once, then run as a graph)",
           f"op by op, eagerly, in {sum(o['eager'])} of {len(o['eager'])} calls",
           hint="return a compiled step: wrap it in tf.function (Task 4.9 measures what that "
           "buys)", docs=docs("4.6"))  # fmt: skip


def _loss(name, temperature, num_classes):
    """A loss the test chooses (not the default): cross-entropy on logits / temperature, or
    the squared error of the softmax against the one-hot labels."""
    import keras
    import tensorflow as tf

    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss(y_true, y_pred):  # Keras's argument names: called by position or by name
        if name == "scaled_cross_entropy":
            return ce(y_true, y_pred / temperature)
        one_hot = tf.one_hot(tf.cast(y_true, tf.int32), num_classes)
        return tf.reduce_mean(tf.square(tf.nn.softmax(y_pred) - one_hot))

    return loss


def _observe_train_steps_any(cases):
    import keras

    seen = []
    for weights, classes, batches, lr, momentum, loss in cases:
        model = small_net(classes=classes)
        model.set_weights(weights)
        step = kt.make_train_step(model, keras.optimizers.SGD(lr, momentum=momentum),
                                  _loss(*loss, classes))  # fmt: skip
        seen.append({"losses": [float(step(xb, yb)) for xb, yb in batches],
                     "weights": [np.asarray(w) for w in model.get_weights()]})  # fmt: skip
    return seen


@st.composite
def _labelled_batches(draw):
    """Two batches of a drawn size (one shape: the step is traced once) with drawn labels:
    unbalanced, classes missing."""
    classes, n = draw(st.integers(2, 6)), draw(st.integers(1, 8))
    return classes, [draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)) for _ in range(2)]


@pytest.mark.task("4.6", points=1)
@drawn(examples=2)
@given(data=_labelled_batches(), lr=st.floats(1e-3, 0.2), momentum=st.floats(0.0, 0.95),
       loss=st.tuples(st.sampled_from(["scaled_cross_entropy", "softmax_squared_error"]),
                      st.floats(0.25, 4.0).filter(lambda t: abs(t - 1) > 0.1)),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_train_step_uses_the_given_loss_fn(data, lr, momentum, loss, seed):
    import keras
    import tensorflow as tf

    classes, labels = data
    rng = np.random.default_rng(seed)
    batches = [(rng.normal(size=(len(y), 8, 8, 3)).astype("float32"), np.array(y, dtype="int64"))
               for y in labels]  # fmt: skip
    ref = small_net(seed=seed % 100, classes=classes)
    start = ref.get_weights()
    call = (f"make_train_step(model, SGD({lr:.4g}, momentum={momentum:.4g}), loss_fn={loss[0]}"
            f"{f' (temperature {loss[1]:.3g})' if loss[0] == 'scaled_cross_entropy' else ''}): "
            f"steps on batches of {[len(y) for y in labels]}, labels {labels}")
    (o,) = observed(_observe_train_steps_any, [(start, classes, batches, lr, momentum, loss)],
                    what=call, docs=docs("4.6"))  # fmt: skip
    opt = keras.optimizers.SGD(lr, momentum=momentum)
    loss_fn = _loss(*loss, classes)
    want = []
    for xb, yb in batches:
        with tf.GradientTape() as tape:
            value = loss_fn(yb, ref(xb, training=True))
        grads = tape.gradient(value, ref.trainable_variables)
        opt.apply_gradients(zip(grads, ref.trainable_variables))
        want.append(float(value))
    expect_close(o["losses"], want, f"{call}: losses against a reference GradientTape step with "
                 "the same loss_fn", atol=1e-5, rtol=1e-5, hint="the loss is loss_fn when one is "
                 "given (the default only when it is None)", docs=docs("4.6"))  # fmt: skip
    for a, b in zip(o["weights"], ref.get_weights()):
        expect_close(a, b, f"{call}: weights after the steps against the reference", atol=1e-5,
                     rtol=1e-4, hint="the gradient of the given loss_fn, applied with the given "
                     "optimizer", docs=docs("4.6"))  # fmt: skip


def _observe_alexnet_bn_step(x, y):
    import keras

    model = ka.build_alexnet(num_classes=4, norm="batch", input_size=67)
    bns = [layer for layer in model.layers if _kind(layer) == "BatchNormalization"]
    before = [np.asarray(w) for w in bns[0].get_weights()] if bns else []
    step = kt.make_train_step(model, keras.optimizers.SGD(0.01))
    loss = float(step(x, y))
    after = [np.asarray(w) for w in bns[0].get_weights()] if bns else []
    return {"bn_layers": len(bns), "before": before, "after": after, "loss": loss,
            "classes": model.output_shape[-1]}


@pytest.mark.task("4.6", points=2)
def test_train_step_updates_batch_norm_in_training_mode():
    x = np.random.default_rng(0).normal(size=(4, 67, 67, 3)).astype("float32")
    o = observed(_observe_alexnet_bn_step, x, np.arange(4), what="one training step of "
                 "build_alexnet(num_classes=4, norm='batch', input_size=67)",
                 docs=docs("4.6"))  # fmt: skip
    expect(o["bn_layers"] >= 1 and len(o["before"]) == 4 == len(o["after"]),
           "BatchNormalization layers in build_alexnet(norm='batch') (found by type, the "
           "first one is checked)", "at least one, with gamma, beta, moving mean and moving "
           "variance", f"{o['bn_layers']} layers", hint="norm_layer('batch', ...) after the "
           "ReLU of every convolution", docs=docs("4.6"))  # fmt: skip
    expect(np.isfinite(o["loss"]), "loss of one AlexNet training step", "finite", o["loss"],
           docs=docs("4.6"))  # fmt: skip
    expect_equal(o["classes"], 4, "outputs of build_alexnet(num_classes=4)", hint="the last "
                 "Dense layer has num_classes units: pass the argument on to classifier_layers",
                 docs=docs("4.4"))  # fmt: skip
    (gamma, _, moving, _), (gamma2, _, moving2, _) = o["before"], o["after"]
    expect(not np.allclose(moving, moving2), "BatchNorm moving mean after a training step",
           "updated (BatchNorm in training mode)", "unchanged",
           hint="the model must run in training mode inside the step (BatchNorm then "
                "updates its moving statistics); do not freeze BatchNorm",
           docs=docs("4.6"))  # fmt: skip
    expect(not np.allclose(gamma, gamma2), "BatchNorm gamma after a training step", "trained",
           "unchanged", hint="BatchNorm's gamma and beta are trainable weights: keep them in "
           "model.trainable_variables", docs=docs("4.6"))  # fmt: skip


# ---------------------------------------------------------------- 4.7
def _observe_schedule(initial_lr, drop, every, epochs, current_lr):
    """The learner's schedule driven by Keras's own LearningRateScheduler, the optimizer's
    rate set to ``current_lr`` before every epoch (a schedule must not depend on it)."""
    import keras

    schedule = kt.lr_schedule(initial_lr, drop=drop, every=every)
    holder = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    holder.compile(optimizer=keras.optimizers.SGD(current_lr), loss="mse")
    callback = keras.callbacks.LearningRateScheduler(schedule)
    callback.set_model(holder)
    rates = []
    for epoch in range(epochs):
        holder.optimizer.learning_rate = current_lr
        callback.on_epoch_begin(epoch)
        rates.append(float(holder.optimizer.learning_rate.numpy()))
    return rates


@pytest.mark.task("4.7", points=2)
def test_lr_schedule_does_not_compound():
    got = observed(_observe_schedule, 0.1, 0.5, 2, 6, 0.0001, what="lr_schedule(0.1, drop=0.5, "
                   "every=2) inside keras.callbacks.LearningRateScheduler",
                   hint="return a float; Keras calls schedule(epoch, lr) or schedule(epoch)",
                   docs=docs("4.7"))  # fmt: skip
    expect_close(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], "learning rate per epoch set by "
                 "LearningRateScheduler(lr_schedule(0.1, drop=0.5, every=2)), the optimizer's "
                 "current rate a wrong 0.0001 each epoch", atol=1e-9, rtol=1e-6,
                 hint="a pure function of the epoch; lr / (epoch + 1) applied to the current "
                      "rate compounds", docs=docs("4.7"))  # fmt: skip


def _observe_schedules(cases, current_lr):
    return [_observe_schedule(*case, current_lr) for case in cases]


@pytest.mark.task("4.7", points=1)
@drawn(examples=6)
@given(cases=st.lists(st.tuples(st.floats(1e-4, 1.0), st.floats(0.05, 0.95).filter(lambda d: d != 0.5),
                                st.integers(1, 6), st.integers(2, 12)), min_size=3, max_size=3),
       current_lr=st.floats(1e-5, 1.0))  # fmt: skip
def test_lr_schedule_any_drop_and_every(cases, current_lr):
    got = observed(_observe_schedules, cases, current_lr, what="lr_schedule(initial_lr, drop=..., "
                   "every=...) with drawn arguments, inside keras.callbacks.LearningRateScheduler",
                   hint="return a float; Keras calls schedule(epoch, lr) or schedule(epoch)",
                   docs=docs("4.7"))  # fmt: skip
    for (initial_lr, drop, every, epochs), rates in zip(cases, got):
        want = [initial_lr * drop ** (epoch // every) for epoch in range(epochs)]
        expect_close(rates, want, f"learning rate per epoch set by LearningRateScheduler("
                     f"lr_schedule({initial_lr!r}, drop={drop!r}, every={every})), the "
                     f"optimizer's current rate a wrong {current_lr!r} each epoch", atol=1e-12,
                     rtol=1e-6, hint="initial_lr * drop ** (epoch // every), with the arguments' "
                     "values (0.5 and 10 are only the defaults)", docs=docs("4.7"))  # fmt: skip


def _observe_fit(weights, x, y, y_val, epochs, lr, patience, drop_every):
    import keras
    import tensorflow as tf

    model = small_net(seed=3)
    model.set_weights(weights)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x, y_val)).batch(8)
    ckpt = os.path.join(tempfile.mkdtemp(), "best.weights.h5")
    h = kt.fit_keras(model, train, val, epochs=epochs, lr=lr, checkpoint_path=ckpt,
                     patience=patience, drop_every=drop_every)  # fmt: skip
    h = getattr(h, "history", h)
    out = {"history": {str(k): [float(v) for v in vals] for k, vals in dict(h).items()},
           "final": [np.asarray(w) for w in model.get_weights()],
           "checkpoint": open(ckpt, "rb").read() if os.path.isfile(ckpt) else None}  # fmt: skip
    # the optimizer fit_keras compiled, rebuilt from its config: two steps, gradient 1
    opt = model.optimizer
    probe = type(opt).from_config(opt.get_config())
    probe.learning_rate = 0.1
    v = keras.Variable(np.zeros(1, "float32"))
    out["probe"] = []
    for _ in range(2):
        probe.apply_gradients([(tf.ones(1), v)])
        out["probe"].append(float(v.numpy()[0]))
    return out


def reference_fit(weights, x, y, y_val, epochs, lr, path, drop_every, patience=10):
    """The page's fit: SGD momentum 0.9, cross-entropy on logits, step-decay schedule,
    ModelCheckpoint and EarlyStopping on validation accuracy, best weights restored."""
    import keras
    import tensorflow as tf

    model = small_net(seed=3)
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=SGD_MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])  # fmt: skip
    callbacks = [keras.callbacks.LearningRateScheduler(lambda e: float(lr * 0.5 ** (e // drop_every))),
                 keras.callbacks.ModelCheckpoint(str(path), monitor="val_accuracy", mode="max",
                                                 save_best_only=True, save_weights_only=True),
                 keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience,
                                               restore_best_weights=True)]  # fmt: skip
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x, y_val)).batch(8)
    h = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=0)
    return h.history, model.get_weights()


@pytest.mark.task("4.7", points=3)
def test_fit_checkpoints_the_best_validation_epoch(tmp_path):
    x, y = data(32)
    y_val = (y + 1) % 4  # shifted labels: validation accuracy peaks away from training's
    start = small_net(seed=3).get_weights()
    o = observed(_observe_fit, start, x, y, y_val, 5, 0.05, 10, 2, what="fit_keras on a small "
                 "convnet, 5 epochs, drop_every=2", docs=docs("4.7"))  # fmt: skip
    h = o["history"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        expect(key in h and len(h[key]) == 5, f"history[{key!r}]", "5 values", h.get(key),
               hint="return the per-epoch history dict that fit records; compile with the "
                    "accuracy metric",
               docs=docs("4.7"))  # fmt: skip
    probe = o["probe"]
    moment = round(-(probe[1] - probe[0]) / 0.1 - 1, 4)
    expect_close(probe, [-0.1, -0.1 * (2 + SGD_MOMENTUM)], "the optimizer fit_keras compiled, "
                 "rebuilt from its config at lr 0.1: a weight's position after two steps of "
                 f"gradient 1 (measured momentum {moment})", atol=1e-6,
                 hint="SGD with momentum 0.9 (not Nesterov); Keras's default momentum is 0",
                 docs=docs("4.7"))  # fmt: skip
    best = int(np.argmax(h["val_accuracy"]))
    assert best != int(np.argmax(h["accuracy"])), "fixture failed to separate train and val"
    assert best != 4, "fixture failed to put the best validation epoch before the last"
    expect(o["checkpoint"] is not None, "checkpoint file", "written to checkpoint_path",
           "not written", hint="a checkpoint callback that writes the weights only to "
           "checkpoint_path", docs=docs("4.7"))  # fmt: skip
    ckpt = tmp_path / "best.weights.h5"
    ckpt.write_bytes(o["checkpoint"])
    check = small_net(seed=4)
    check.load_weights(str(ckpt))
    pred = np.argmax(check.predict(x, verbose=0), 1)
    acc = float(np.mean(pred == y_val))
    expect_close(acc, max(h["val_accuracy"]), "validation accuracy of the checkpointed "
                 f"weights (history: val {np.round(h['val_accuracy'], 3).tolist()}, train "
                 f"{np.round(h['accuracy'], 3).tolist()})", atol=1e-6,
                 hint="the checkpoint must hold the epoch with the best VALIDATION accuracy "
                      "(what does the callback monitor, and does it keep only the best?)",
                 docs=docs("4.7"))  # fmt: skip
    ok = len(o["final"]) == len(check.get_weights()) and all(
        np.allclose(a, b, atol=1e-7) for a, b in zip(o["final"], check.get_weights()))  # fmt: skip
    expect(ok, "the model's weights when fit_keras returns", f"the best validation epoch's "
           f"(epoch {best + 1}, as checkpointed)", "other weights (the last epoch's?)",
           hint="early stopping on validation accuracy can put the best epoch's weights back "
                "when it ends (the page's Look up)", docs=docs("4.7"))  # fmt: skip
    expect_close(h.get("learning_rate", []), [0.05, 0.05, 0.025, 0.025, 0.0125], "learning "
                 "rate per epoch (drop_every=2)", atol=1e-7, hint="a learning-rate scheduler "
                 "callback with your lr_schedule, every drop_every epochs (the argument's "
                 "value; 10 is only its default), records history['learning_rate']",
                 docs=docs("4.7"))  # fmt: skip
    want, _ = reference_fit(start, x, y, y_val, 5, 0.05, tmp_path / "reference.weights.h5", 2)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # every field, by value
        expect_close(h[key], want[key], f"history[{key!r}] against a reference fit from the "
                     "same weights", atol=1e-4, hint="SGD at lr with momentum 0.9, cross-entropy "
                     "on logits, the accuracy metric; train on train_ds, validate on val_ds "
                     "every epoch; return the history fit recorded, each key its own values",
                     docs=docs("4.7"))  # fmt: skip


@pytest.mark.task("4.7", points=1)
def test_fit_stops_early_on_validation_accuracy_with_the_patience_given(tmp_path):
    """Validation labels half right: validation accuracy rises to its best at epoch 4 while
    validation loss is best at epoch 1, so the epoch training stops at tells the monitor and
    the patience apart."""
    x, y = data(32)
    y_val = np.where(np.arange(32) < 16, y, (y + 1) % 4)
    start = small_net(seed=3).get_weights()
    o = observed(_observe_fit, start, x, y, y_val, 8, 0.05, 2, 10, what="fit_keras on a small "
                 "convnet, up to 8 epochs, patience=2", docs=docs("4.7"))  # fmt: skip
    want, final = reference_fit(start, x, y, y_val, 8, 0.05, tmp_path / "reference.weights.h5",
                                10, patience=2)  # fmt: skip
    best = int(np.argmax(want["val_accuracy"]))
    assert len(want["val_accuracy"]) < 8 and best != int(np.argmin(want["val_loss"])), \
        "fixture failed to stop early, or to separate validation accuracy and loss"  # fmt: skip
    got = o["history"].get("val_accuracy", [])
    expect_equal(len(got), len(want["val_accuracy"]), "epochs fit_keras ran (up to 8) with "
                 f"patience=2, validation accuracy {np.round(want['val_accuracy'], 3).tolist()}, "
                 f"validation loss {np.round(want['val_loss'], 3).tolist()}",
                 hint="EarlyStopping monitoring val_accuracy (mode 'max'), with the patience "
                 "argument's value: it stops 2 epochs after the best one (10 is only the "
                 "default; val_loss would stop after epoch 3)", docs=docs("4.7"))  # fmt: skip
    ok = len(o["final"]) == len(final) and all(
        np.allclose(a, b, atol=1e-4) for a, b in zip(o["final"], final))  # fmt: skip
    expect(ok, "the model's weights when fit_keras returns", f"the best validation-accuracy "
           f"epoch's (epoch {best + 1})", "other weights", hint="restore_best_weights, "
           "monitoring val_accuracy", docs=docs("4.7"))  # fmt: skip


# ---------------------------------------------------------------- 4.8
def _observe_evaluate(table, labels, batch, num_classes):
    import keras
    import tensorflow as tf

    class Known(keras.layers.Layer):
        """Logits looked up by sample id; random in training mode."""

        def call(self, ids, training=False):
            out = tf.gather(table, tf.cast(ids[:, 0], tf.int32))
            return out + (100.0 * tf.random.normal(tf.shape(out)) if training else 0.0)

    model = keras.Sequential([keras.Input((1,)), Known()])
    ids = np.arange(len(labels), dtype="float32")[:, None]
    ds = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(batch)
    r = kt.evaluate_keras(model, ds, num_classes=num_classes)
    return {"confusion_matrix": np.asarray(r["confusion_matrix"]),
            "per_class_accuracy": np.asarray(r["per_class_accuracy"], dtype=np.float64),
            "accuracy": float(r["accuracy"])}  # fmt: skip


def _observe_evaluate_any(cases):
    return [_observe_evaluate(*case) for case in cases]


def expect_per_class(got, cm, what: str) -> None:
    """Per-class accuracy: the diagonal over the row sums, NaN where a class has no sample."""
    got, rows = np.asarray(got, dtype=np.float64), cm.sum(1)
    expect_equal(np.isnan(got).tolist() if got.shape == rows.shape else got.shape,
                 (rows == 0).tolist(), f"{what}: which classes have no accuracy (NaN)",
                 hint="a class with no sample has no accuracy: NaN, not 0 (and not an error)",
                 docs=docs("4.8"))  # fmt: skip
    expect_close(got[rows > 0], np.diag(cm)[rows > 0] / rows[rows > 0], f"{what}: per-class "
                 "accuracy of the classes that have samples", atol=1e-6,
                 hint="each class's correct predictions over ITS samples (a row of the "
                 "confusion matrix)", docs=docs("4.8"))  # fmt: skip


@st.composite
def _predicted(draw):
    """Labels and predictions drawn: unbalanced classes, some missing, any batch size."""
    classes = draw(st.integers(2, 6))
    n = draw(st.integers(1, 20))
    pair = st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)
    return classes, draw(pair), draw(pair), draw(st.integers(1, 8))


@pytest.mark.task("4.8", points=1)
@drawn(examples=5)
@given(cases=st.lists(_predicted(), min_size=2, max_size=2))
def test_evaluate_on_drawn_labels(cases):
    args = [(np.eye(c, dtype="float32")[p] * 5, np.array(y), b, c) for c, y, p, b in cases]
    got = observed(_observe_evaluate_any, args, what="evaluate_keras on drawn labels and "
                   "predictions", docs=docs("4.8"))  # fmt: skip
    for (c, y, p, b), r in zip(cases, got):
        cm = np.zeros((c, c), dtype=np.int64)
        np.add.at(cm, (np.array(y), np.array(p)), 1)
        what = (f"evaluate_keras(model, ds, num_classes={c}): {len(y)} samples in batches of {b}, "
                f"labels {y}, predictions {p}")
        expect_equal(np.asarray(r["confusion_matrix"]).tolist(), cm.tolist(), f"{what}: "
                     "confusion matrix (rows true, columns predicted)", hint="every sample of "
                     "every batch, num_classes x num_classes whatever classes occur",
                     docs=docs("4.8"))  # fmt: skip
        expect_per_class(r["per_class_accuracy"], cm, what)
        expect_close(r["accuracy"], np.trace(cm) / cm.sum(), f"{what}: accuracy", atol=1e-6,
                     hint="correct predictions over all samples (not the mean of the per-class "
                     "accuracies)", docs=docs("4.8"))  # fmt: skip


@pytest.mark.task("4.8", points=3)
def test_evaluate_counts_every_sample():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    preds = np.array([0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 1, 1])
    table = np.eye(3, dtype="float32")[preds] * 5
    r = observed(_observe_evaluate, table, labels, 5, 3, what="evaluate_keras over 12 samples "
                 "in batches of 5", docs=docs("4.8"))  # fmt: skip
    cm = np.zeros((3, 3), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    expect_equal(np.asarray(r["confusion_matrix"]).tolist(), cm.tolist(),
                 "confusion matrix over all 12 samples (rows true, columns predicted)",
                 hint="every sample of every batch; training=False", docs=docs("4.8"))  # fmt: skip
    expect_close(r["per_class_accuracy"], np.diag(cm) / cm.sum(1), "per-class accuracy",
                 atol=1e-6, docs=docs("4.8"))  # fmt: skip
    expect_close(r["accuracy"], np.trace(cm) / cm.sum(), "accuracy", atol=1e-6,
                 docs=docs("4.8"))  # fmt: skip
