"""The tf.distribute strategy a run trains under."""

from __future__ import annotations

import tensorflow as tf

from pix2pix_tf.config import RunConfig
from pix2pix_tf.errors import ConfigError


def split_cpu(replicas: int) -> None:
    """Presents the CPU as `replicas` logical devices, so MirroredStrategy can be run on it.

    Must run before TensorFlow initialises its devices (before any op executes).
    """
    if replicas <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as e:
        raise ConfigError(f"--cpu_replicas must be set before TensorFlow starts: {e}") from e


def make_strategy(config: RunConfig) -> tf.distribute.Strategy:
    """MirroredStrategy over every local GPU (or the CPU's logical devices), or one device."""
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = None
        if not tf.config.list_logical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise ConfigError(f"Unknown strategy {config.strategy!r}.")
