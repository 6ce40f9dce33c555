"""The reference's Adam and learning-rate schedule (constant, then linear decay to 0)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

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


# torch.optim.Adam's default, which the reference keeps; Keras' default (1e-7) is ten times larger.
REFERENCE_EPSILON = 1e-8


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class ReferenceAdam(keras.optimizers.Adam):
    """The reference's Adam (torch.optim.Adam): epsilon added to the bias-corrected sqrt(v).

    torch: w -= lr * m_hat / (sqrt(v_hat) + epsilon), m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).
    Keras (and TensorFlow's ApplyAdam kernel) add epsilon to sqrt(v) before the bias correction:
    w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon). The two agree exactly when
    Keras' form is given epsilon * sqrt(1 - b2^t), which `_step_epsilon` computes each step.
    Keras' own (1e-7 against sqrt(v) ~ sqrt(1 - b2^t) |g|) changes the steps of small
    gradients, most in the early steps.

    `epsilon` is torch's (defaults to the reference's). The slot variables (momentum,
    velocity) and their names are Keras Adam's, so checkpoints of `keras.optimizers.Adam` restore into it and back.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=REFERENCE_EPSILON, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)

    def _step_epsilon(self, dtype, beta_2_power):
        """The epsilon that, added before the bias correction, is `self.epsilon` added after it."""
        return ops.cast(self.epsilon, dtype) * ops.sqrt(1 - beta_2_power)

    def update_step(self, gradient, variable, learning_rate):
        """Keras' update with the step's epsilon, written with Keras ops (one pass per op)."""
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1 = ops.cast(self.beta_1, variable.dtype)
        beta_2 = ops.cast(self.beta_2, variable.dtype)
        beta_1_power, beta_2_power = ops.power(beta_1, step), ops.power(beta_2, step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]

        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        # 1 - beta from the cast beta (as the kernel does), consistent with the powers above.
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))
        if self.amsgrad:  # torch's amsgrad: the running maximum of v in place of v.
            v_hat = self._velocity_hats[index]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        epsilon = self._step_epsilon(variable.dtype, beta_2_power)
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), epsilon)))


def make_optimizer(config: OptimConfig, steps_per_epoch: float, name: str,
                   adam: type[ReferenceAdam] = ReferenceAdam) -> ReferenceAdam:
    """The reference's Adam(lr, beta1, beta2, eps=1e-8) on its schedule: one per network, since an
    optimizer only updates what it was built for. `adam`: this class, or a faster form of the same
    update (pix2pix_tf.training.fused_adam.FusedAdam)."""
    schedule = LinearDecaySchedule(config.lr, config.epochs, config.epochs_decay, steps_per_epoch)
    return adam(schedule, beta_1=config.beta1, beta_2=config.beta2, epsilon=REFERENCE_EPSILON, name=name)
