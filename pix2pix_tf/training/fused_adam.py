"""The reference's Adam through TensorFlow's fused `ApplyAdam` kernel: the same update, one pass."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from pix2pix_tf.training.optimization import ReferenceAdam


@dataclasses.dataclass(frozen=True)
class _StepScalars:
    """What `ApplyAdam` takes besides the variable, its slots, its gradient and the learning
    rate (which a replica passes as its own value): the same for every variable."""

    beta_1: tf.Tensor
    beta_2: tf.Tensor
    beta_1_power: tf.Tensor
    beta_2_power: tf.Tensor
    epsilon: tf.Tensor


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class FusedAdam(ReferenceAdam):
    """`ReferenceAdam`, each float32 variable updated by TensorFlow's fused `ApplyAdam` kernel.

    The kernel computes Keras' form of the update (see `ReferenceAdam`), so it is given the
    step's epsilon. Keras' ops each make a pass over the variable's memory; the kernel makes
    one, which is why it is the default (docs/performance.md). Same slot variables as
    `ReferenceAdam`: a run may switch between the two. The step's scalars (the betas, their
    bias-correction powers, epsilon) are computed once per step for all variables, not once
    per variable: the same numbers, fewer ops for TensorFlow to trace.
    """

    def _step_scalars(self) -> _StepScalars:
        dtype = tf.float32
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, step)
        return _StepScalars(beta_1=beta_1, beta_2=beta_2,
                            beta_1_power=tf.pow(beta_1, step), beta_2_power=beta_2_power,
                            epsilon=self._step_epsilon(dtype, beta_2_power))

    def _fused(self, gradient, variable) -> bool:
        return not (self.amsgrad or isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32)

    def _apply_adam(self, variable, gradient, learning_rate, scalars: _StepScalars):
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index].value, self._velocities[index].value
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle, beta1_power=scalars.beta_1_power,
            beta2_power=scalars.beta_2_power, lr=tf.cast(learning_rate, tf.float32), beta1=scalars.beta_1,
            beta2=scalars.beta_2, epsilon=scalars.epsilon, grad=tf.cast(gradient, tf.float32))

    def update_step(self, gradient, variable, learning_rate):
        if not self._fused(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        return self._apply_adam(variable, gradient, learning_rate, self._step_scalars())

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """Keras' loop over the variables (keras' TensorFlow optimizer), with the step's scalars
        computed once, in the cross-replica context, for every variable."""
        scalars = self._step_scalars()

        def update(variable, gradient, learning_rate):
            if not self._fused(gradient, variable):
                return ReferenceAdam.update_step(self, gradient, variable, learning_rate)
            return self._apply_adam(variable, gradient, learning_rate, scalars)

        for gradient, variable in grads_and_vars:
            distribution.extended.update(variable, update, args=(gradient, learning_rate), group=False)
