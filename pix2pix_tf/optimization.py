"""Adam and the reference's learning-rate schedule (constant, then linear decay to 0)."""

from __future__ import annotations

import keras
import tensorflow as tf

from pix2pix_tf.config import OptimConfig


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class LinearDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The reference's `lambda_rule`, stepped once per epoch.

    lr = base * (1 - max(0, epoch + 1 - epochs) / (epochs_decay + 1)), where `epoch` counts
    the epochs completed: `epochs` epochs at the base rate, then `epochs_decay` epochs
    decaying linearly towards 0.
    """

    def __init__(self, base_lr: float, epochs: int, epochs_decay: int, steps_per_epoch: float):
        self.base_lr = base_lr
        self.epochs = epochs
        self.epochs_decay = epochs_decay
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        epoch = tf.floor(tf.cast(step, tf.float32) / self.steps_per_epoch)
        decayed = tf.maximum(0.0, epoch + 1.0 - self.epochs) / float(self.epochs_decay + 1)
        return self.base_lr * tf.maximum(0.0, 1.0 - decayed)

    def get_config(self):
        return {"base_lr": self.base_lr, "epochs": self.epochs, "epochs_decay": self.epochs_decay,
                "steps_per_epoch": self.steps_per_epoch}


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable updated by TensorFlow's fused `ApplyAdam` kernel.

    The same update as Keras' (m, v, then var -= lr_t * m / (sqrt(v) + epsilon) with the bias
    correction folded into lr_t) and the same slot variables, so checkpoints are
    interchangeable. Keras writes it as eight element-wise ops, each a pass over memory; for
    the generator's 54M parameters that is ~150 ms a step on a 2-core CPU, the fused kernel
    ~40 ms (docs/performance.md).
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32:
            return super().update_step(gradient, variable, learning_rate)
        step = tf.cast(self.iterations + 1, variable.dtype)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index].value, self._velocities[index].value
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, variable.dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, variable.dtype), step),
            lr=tf.cast(learning_rate, variable.dtype), beta1=tf.cast(self.beta_1, variable.dtype),
            beta2=tf.cast(self.beta_2, variable.dtype), epsilon=tf.cast(self.epsilon, variable.dtype),
            grad=tf.cast(gradient, variable.dtype))


def make_optimizer(config: OptimConfig, steps_per_epoch: float, name: str, fused: bool = True) -> keras.optimizers.Adam:
    """Adam(lr, beta1=0.5): one per network, since an optimizer only updates what it was built for."""
    schedule = LinearDecaySchedule(config.lr, config.epochs, config.epochs_decay, steps_per_epoch)
    adam = FusedAdam if fused else keras.optimizers.Adam
    return adam(schedule, beta_1=config.beta1, beta_2=config.beta2, name=name)
