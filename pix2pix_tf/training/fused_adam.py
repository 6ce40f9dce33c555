"""The reference's Adam through TensorFlow's fused `ApplyAdam` kernel: the same update, one pass."""

from __future__ import annotations

import keras
import tensorflow as tf

from pix2pix_tf.training.optimization import ReferenceAdam


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class FusedAdam(ReferenceAdam):
    """`ReferenceAdam`, each float32 variable updated by TensorFlow's fused `ApplyAdam` kernel.

    The kernel computes Keras' form of the update (see `ReferenceAdam`), so it is given the
    step's epsilon. Keras' ops each make a pass over the variable's memory; the kernel makes
    one, which is why it is the default (docs/performance.md). Same slot variables as
    `ReferenceAdam`: a run may switch between the two.
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, step)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index].value, self._velocities[index].value
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=beta_2_power,
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=self._step_epsilon(variable, beta_2_power), grad=tf.cast(gradient, dtype))
