"""What the machine can do: its fp32 matmul throughput, FLOP counts of traced graphs, memory."""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import time
from typing import Callable

import tensorflow as tf


@dataclasses.dataclass
class MachineInfo:
    cpu: str
    cores: int
    tensorflow: str
    onednn: bool
    matmul_size: int
    matmul_gflops: float  # Median of the timed repeats.
    matmul_gflops_best: float


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) wall seconds of `fn`, which must wait for its own result."""
    for _ in range(warmup):
        fn()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), min(durations)


def matmul_gflops(size: int = 4096, repeats: int = 10) -> tuple[float, float]:
    """(median, best) GFLOP/s of one size x size fp32 matmul: the ceiling a conv net's step
    is measured against (convolutions run as matrix products in oneDNN)."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    median, best = median_seconds(lambda: product().numpy(), repeats)
    flops = 2.0 * size ** 3
    return flops / median / 1e9, flops / best / 1e9


def machine_info(matmul_size: int = 4096) -> MachineInfo:
    median, best = matmul_gflops(matmul_size)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    return MachineInfo(cpu=cpu_name(), cores=os.cpu_count() or 1, tensorflow=tf.__version__, onednn=onednn,
                       matmul_size=matmul_size, matmul_gflops=median, matmul_gflops_best=best)


def graph_flops(graph: tf.Graph) -> int:
    """Floating-point operations of one run of `graph`, as TensorFlow's profiler counts them
    (each op's registered statistics: 2 * MACs for convolutions and their gradients)."""
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
