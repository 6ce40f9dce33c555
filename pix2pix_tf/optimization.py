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


def make_optimizer(config: OptimConfig, steps_per_epoch: float, name: str) -> keras.optimizers.Adam:
    """Adam(lr, beta1=0.5): one per network, since an optimizer only updates what it was built for."""
    schedule = LinearDecaySchedule(config.lr, config.epochs, config.epochs_decay, steps_per_epoch)
    return keras.optimizers.Adam(schedule, beta_1=config.beta1, beta_2=config.beta2, name=name)
