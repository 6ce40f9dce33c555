"""The tf.distribute strategy a run trains under, and who in a cluster writes files.

    default       one device
    mirrored      every local GPU, else the CPU (or its `--cpu_replicas` logical devices)
    multi_worker  MultiWorkerMirroredStrategy over the cluster described by TF_CONFIG
                  (the wait for the other workers: pix2pix_tf.training.cluster)
    tpu           TPUStrategy over the TPU found by the cluster resolver
"""

from __future__ import annotations

import tensorflow as tf

from pix2pix_tf.config import RunConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.training.cluster import cluster_from_env


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
    """The strategy named by `config.strategy` (see the module docstring)."""
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.strategy == "mirrored":
        devices = None
        if not tf.config.list_logical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if config.strategy == "multi_worker":
        return _multi_worker_strategy()
    if config.strategy == "tpu":
        return _tpu_strategy()
    raise ConfigError(f"Unknown strategy {config.strategy!r}.")


def _multi_worker_strategy() -> tf.distribute.Strategy:
    cluster = cluster_from_env()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (tf.errors.OpError, RuntimeError) as e:  # TensorFlow gave up connecting (a missing chief, say).
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        peers = f" with {', '.join(cluster.peers)}" if cluster.peers else ""
        raise ConfigError(f"--strategy=multi_worker: this worker ({cluster.me}) could not form the cluster{peers} "
                          f"({reason}). Start every worker with the same TF_CONFIG "
                          "cluster and check that these addresses are reachable.") from e


def _tpu_strategy() -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ConfigError(f"--strategy=tpu found no TPU ({type(e).__name__}: {e}). Run on a TPU VM, or set "
                          "TPU_NAME to the TPU's name or grpc:// address.") from e
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief writes the real checkpoint, config.json, logs and samples."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                            and "chief" not in resolver.cluster_spec().as_dict())


def worker_index(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0
    return int(resolver.task_id or 0)
