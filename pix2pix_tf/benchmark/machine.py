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

# The x86 flags that decide which of oneDNN's kernels run: bf16 in hardware needs avx512_bf16 or amx_bf16.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


@dataclasses.dataclass
class MachineInfo:
    cpu: str
    cpu_features: list[str]  # Those of CPU_FEATURES this CPU has (Linux' /proc/cpuinfo flags).
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


def cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return [feature for feature in CPU_FEATURES if feature in flags]


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
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)), autograph=False)
    median, best = median_seconds(lambda: product().numpy(), repeats)
    flops = 2.0 * size ** 3
    return flops / median / 1e9, flops / best / 1e9


def machine_info(matmul_size: int = 4096) -> MachineInfo:
    median, best = matmul_gflops(matmul_size)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    return MachineInfo(cpu=cpu_name(), cpu_features=cpu_features(), cores=os.cpu_count() or 1,
                       tensorflow=tf.__version__, onednn=onednn,
                       matmul_size=matmul_size, matmul_gflops=median, matmul_gflops_best=best)


@dataclasses.dataclass
class FlopCount:
    traced: int  # Every op of the traced graph, as TensorFlow's profiler counts them.
    executed: int  # Only the ops that run: those a fetched value or a side effect depends on.


def graph_flops(graph: tf.Graph) -> FlopCount:
    """Floating-point operations of one run of `graph`, from each op's registered statistics
    as TensorFlow's profiler counts them (2 * MACs for convolutions and their gradients).

    The traced count includes ops that never run: a tape computes the gradient of every
    input of an op (e.g. D's weights under G's tape, or D's input pair) and grappler prunes
    those nobody uses before the graph executes. MFU is judged on the executed count.
    """
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    per_op: dict[str, int] = {}
    pending = [tf.compat.v1.profiler.profile(graph, options=options)]
    while pending:
        node = pending.pop()
        per_op[node.name] = node.float_ops
        pending.extend(node.children)
    live = live_ops(graph)
    return FlopCount(traced=sum(per_op.values()),
                     executed=sum(flops for name, flops in per_op.items() if name in live))


def live_ops(graph: tf.Graph) -> set[str]:
    """Names of the ops that run: everything the outputs, the control outputs and the
    stateful ops (variable updates) depend on; TensorFlow prunes the rest."""
    pending = ([tensor.op for tensor in graph.outputs] + list(graph.control_outputs)
               + [op for op in graph.get_operations() if op.op_def.is_stateful])
    live: set[str] = set()
    while pending:
        op = pending.pop()
        if op.name in live:
            continue
        live.add(op.name)
        pending.extend(tensor.op for tensor in op.inputs)
        pending.extend(op.control_inputs)
    return live


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
