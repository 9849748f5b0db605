"""The Keras arms' optimizer: Keras's SGD (momentum, weight decay applied to the weights
before the step), its update done in place by TensorFlow's fused training kernels.

Keras 3's SGD writes the update as separate tensor operations: ``m * momentum``,
``g * lr``, their difference, and ``w * wd * lr`` for the decay, each a new tensor the size
of the weight. For AlexNet's first dense layer (9216 x 4096, 151 MB) those temporaries took a
training step 0.25 GB above the model, its momentum and its gradients (#30: the Keras arm's
process was the suite's largest). ``ResourceApplyKerasMomentum`` (the kernel Keras 2's SGD
used) computes ``m = m * momentum - g * lr; w += m`` in place, and
``ResourceApplyGradientDescent`` the decay ``w -= (lr * wd) * w``: the same update, equal up
to float rounding (tests/test_keras_sgd.py). Anything else (Nesterov, no momentum, several
replicas) is Keras's own code.
"""

from __future__ import annotations

import functools


@functools.cache
def _fused_class():
    import keras
    import tensorflow as tf

    def _tf_variable(v):
        return v.value if isinstance(v, keras.Variable) else v

    class FusedSGD(keras.optimizers.SGD):
        """``keras.optimizers.SGD`` whose momentum update and weight decay run in place."""

        def update_step(self, gradient, variable, learning_rate):
            if self.momentum == 0 or self.nesterov:
                return super().update_step(gradient, variable, learning_rate)
            v = _tf_variable(variable)
            m = _tf_variable(self.momentums[self._get_variable_index(variable)])
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=v.handle, accum=m.handle, lr=tf.cast(learning_rate, v.dtype),
                grad=tf.cast(gradient, v.dtype), momentum=tf.cast(self.momentum, v.dtype),
                use_locking=False, use_nesterov=False)  # fmt: skip

        def _apply_weight_decay(self, variables):
            if self.weight_decay is None:
                return
            for variable in variables:
                if self._use_weight_decay(variable):
                    v = _tf_variable(variable)
                    rate = tf.cast(self.learning_rate, v.dtype) * tf.cast(self.weight_decay, v.dtype)
                    tf.raw_ops.ResourceApplyGradientDescent(var=v.handle, alpha=rate,
                                                            delta=v.read_value())  # fmt: skip

    return FusedSGD


def keras_sgd(learning_rate, momentum: float = 0.0, weight_decay: float | None = None,
              replicas: int = 1):  # fmt: skip
    """SGD for a Keras arm (and for measuring its step): in place on one replica, Keras's
    own ``SGD`` across several (its distributed update path is left as Keras wrote it)."""
    import keras

    cls = _fused_class() if replicas == 1 else keras.optimizers.SGD
    return cls(learning_rate, momentum=momentum, weight_decay=weight_decay)
