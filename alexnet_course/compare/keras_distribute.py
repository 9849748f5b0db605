"""The Keras arms under ``tf.distribute``: ``MirroredStrategy`` over the visible GPUs.

With two or more GPUs the model, its optimizer and lesson 04's training step are built in
the strategy's scope; each replica takes its share of the global batch (the profile's
batch), the loss of a replica is its share of the global mean
(``tf.nn.compute_average_loss``), and BatchNorm layers use the global batch's statistics
(``synchronized=True``), so N replicas take the step one device takes. With one GPU or
none, the default strategy (one replica) runs lesson 04's step unchanged.
"""

from __future__ import annotations


def strategy_for(devices: list[str] | None = None):
    """``MirroredStrategy`` over ``devices`` (default: every visible GPU) when there are two
    or more of them, else TensorFlow's default strategy (one replica)."""
    import tensorflow as tf

    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices)


def describe(strategy) -> dict:
    """What results.json records about the strategy that trained a Keras arm."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: one replica on TensorFlow's default device
        devices = ["default"]
    return {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "devices": devices}  # fmt: skip


def replica_loss():
    """The loss each replica minimises: its samples' cross-entropy summed and divided by the
    global batch, so that the gradients summed over the replicas are the global mean's."""
    import keras
    import tensorflow as tf

    def loss(y, logits):
        per_sample = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        return tf.nn.compute_average_loss(per_sample)

    return loss


def synchronize_batchnorm(model) -> int:
    """BatchNorm on the global batch's statistics across replicas; returns how many layers.

    Keras's own ``synchronized=True`` takes the variance as E[x^2] - E[x]^2 in one float32
    pass. Here each layer's moments take two passes over the replicas, the mean first and
    then the squares around it, as ``tf.nn.moments`` does on one device. In the 5-step probe
    of tests/test_distributed.py the whole model's weights then differ from one device's by
    4e-6 relative, against 2e-4 with Keras's own (and 2e-3 unsynchronized)."""
    import types

    import keras

    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            if hasattr(layer, "_moments") and hasattr(layer, "_reduction_axes"):
                layer._moments = types.MethodType(_two_pass_moments, layer)
            else:  # another Keras version: its own synchronized statistics
                layer.synchronized = True
            n += 1
    return n


def _two_pass_moments(layer, inputs, mask):
    """Mean and variance of ``inputs`` over the global batch (every replica's share)."""
    import tensorflow as tf

    axes = list(layer._reduction_axes)
    ctx = tf.distribute.get_replica_context()
    if mask is not None or ctx is None or ctx.num_replicas_in_sync == 1:
        return tf.nn.moments(inputs, axes)
    x = tf.cast(inputs, tf.float32)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
    n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
    mean = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(x, axes)) / n
    centred = tf.reduce_sum(tf.square(x - mean), axes)
    var = ctx.all_reduce(tf.distribute.ReduceOp.SUM, centred) / n
    return tf.cast(mean, inputs.dtype), tf.cast(var, inputs.dtype)


def distributed_step(strategy, make_train_step, model, optimizer):
    """Lesson 04's ``make_train_step`` run on every replica: ``step(x, y) -> global mean
    loss`` for a global batch ``(x, y)`` (a batch of the distributed dataset)."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return make_train_step(model, optimizer)
    synchronize_batchnorm(model)
    if not optimizer.built:  # its slots (momentum) are made here, in the strategy's scope,
        optimizer.build(model.trainable_variables)  # not lazily inside a replica's step
    inner = make_train_step(model, optimizer, replica_loss())

    @tf.function
    def step(x, y):
        per_replica = strategy.run(inner, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step


def distribute(strategy, dataset):
    """``dataset`` split over the replicas (unchanged with one replica)."""
    if strategy.num_replicas_in_sync == 1:
        return dataset
    return strategy.experimental_distribute_dataset(dataset)
